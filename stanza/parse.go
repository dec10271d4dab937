package stanza

import (
	"encoding/xml"
	"io"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
)

const (
	nsClient = "jabber:client"
	nsServer = "jabber:server"

	// maxStanzaIDs bounds Evidence.StanzaIDs. XEP-0359 allows one per
	// entity; a message with more is rejected rather than truncated, so that
	// a flood of foreign ones cannot push out the one the server appended.
	maxStanzaIDs = 32
	// maxErrorTexts bounds the <text/> elements kept from a stanza error.
	maxErrorTexts = 8
	// maxLangLen bounds the xml:lang of a kept error text.
	maxLangLen = 64
)

// ParseMessage reads the children of the <message/> whose start element is
// start from r, which must be positioned just after start, and returns the
// delivery evidence the message carries. It reads up to and including the
// matching end element; r may also end with io.EOF instead of it (as
// xmlstream.Inner does). It is the parser for every incoming message, so it
// skips unknown children without building them and allocates little beyond
// the strings it returns.
//
// Errors: a start that is not a message is a *FieldError wrapping
// ErrUnexpectedElement; a message id, from or to, or an id in a receipt,
// marker, origin-id, stanza-id (id or by), occupant-id or thread longer
// than MaxIDLen is a *FieldError wrapping ErrIDTooLong; an invalid from or
// to wraps ErrInvalidJID; more than 32 stanza-ids wrap ErrTooManyElements.
// After such an error the whole message has still been consumed and the
// returned Evidence is filled as far as possible, but it must not be used as
// evidence. Errors from r are returned as they are (io.ErrUnexpectedEOF for
// an early io.EOF; io.ErrNoProgress after 100 (nil, nil) results in a row),
// and then r is left where the error happened.
// Extension elements lacking a required attribute are ignored.
func ParseMessage(start xml.StartElement, r xml.TokenReader) (Evidence, error) {
	var ev Evidence
	t := tokens{r: r}
	verr, err := parseMessage(&t, start, &ev, false)
	if err != nil {
		return ev, err
	}
	return ev, verr
}

func isStanzaNS(space string) bool {
	return space == "" || space == nsClient || space == nsServer
}

// parseMessage fills ev from the message starting with start. verr is the
// first validation error; err is a read error, after which parsing stopped.
// A nested message is the one inside a carbon: carbons in it are ignored and
// it must end with its end element.
func parseMessage(t *tokens, start xml.StartElement, ev *Evidence, nested bool) (verr, err error) {
	report := func(e error) {
		if verr == nil {
			verr = e
		}
	}
	if start.Name.Local != "message" || !isStanzaNS(start.Name.Space) {
		report(fieldErr(start.Name.Local, "", ErrUnexpectedElement))
	}
	ev.Type = xstanza.NormalMessage
	for _, a := range start.Attr {
		if a.Name.Space != "" {
			continue
		}
		switch a.Name.Local {
		case "id":
			if len(a.Value) > MaxIDLen {
				report(fieldErr("message", "id", ErrIDTooLong))
				continue
			}
			ev.ID = a.Value
		case "from":
			report(t.parseJID(&ev.From, a))
		case "to":
			report(t.parseJID(&ev.To, a))
		case "type":
			ev.Type = messageType(a.Value)
		}
	}

	var haveBody, haveThread, haveCarbon bool
	for {
		tok, err := t.next()
		if err == io.EOF && !nested {
			break // r ends with the message (xmlstream.Inner).
		}
		if err != nil {
			return verr, unexpectedEOF(err)
		}
		var child xml.StartElement
		switch tok := tok.(type) {
		case xml.StartElement:
			child = tok
		case xml.EndElement:
			return verr, finish(ev)
		default:
			continue
		}

		// Every case consumes the child through its end element.
		name := child.Name
		switch {
		case isStanzaNS(name.Space) && name.Local == "body" && !haveBody:
			haveBody = true
			ev.Body, _, err = t.text(MaxBodyLen)
		case isStanzaNS(name.Space) && name.Local == "thread" && !haveThread:
			haveThread = true
			var over bool
			ev.Thread, over, err = t.text(MaxIDLen)
			if over {
				ev.Thread = ""
				report(fieldErr("thread", "", ErrIDTooLong))
			}
		case isStanzaNS(name.Space) && name.Local == "error" &&
			ev.Type == xstanza.ErrorMessage && ev.Error == nil:
			ev.Error, err = parseError(t, child)
		case name.Space == NSReceipts && name.Local == "received":
			if ev.Receipt == "" {
				ev.Receipt = optionalID(child, "id", report)
			}
			err = t.skip()
		case name.Space == NSReceipts && name.Local == "request":
			ev.ReceiptRequested = true
			err = t.skip()
		case name.Space == NSMarkers && name.Local == "markable":
			ev.Markable = true
			err = t.skip()
		case name.Space == NSMarkers && markerType(name.Local) != 0:
			if ev.Marker.Type == 0 {
				if id := optionalID(child, "id", report); id != "" {
					ev.Marker = Marker{Type: markerType(name.Local), ID: id}
				}
			}
			err = t.skip()
		case name.Space == NSSID && name.Local == "origin-id":
			if ev.OriginID == "" {
				ev.OriginID = optionalID(child, "id", report)
			}
			err = t.skip()
		case name.Space == NSSID && name.Local == "stanza-id":
			id, by := optionalID(child, "id", report), optionalID(child, "by", report)
			if id != "" && by != "" {
				if len(ev.StanzaIDs) == maxStanzaIDs {
					report(fieldErr("stanza-id", "", ErrTooManyElements))
				} else {
					ev.StanzaIDs = append(ev.StanzaIDs, StanzaID{ID: id, By: by})
				}
			}
			err = t.skip()
		case name.Space == NSOccupantID && name.Local == "occupant-id":
			if ev.OccupantID == "" {
				ev.OccupantID = optionalID(child, "id", report)
			}
			err = t.skip()
		case name.Space == NSMUCUser && name.Local == "x":
			ev.MUCUser = true
			err = t.skip()
		case name.Space == NSDelay && name.Local == "delay":
			ev.HasDelay = true
			err = t.skip()
		case name.Space == NSCarbons && (name.Local == "sent" || name.Local == "received") &&
			!nested && !haveCarbon:
			haveCarbon = true
			ev.Carbon = CarbonSent
			if name.Local == "received" {
				ev.Carbon = CarbonReceived
			}
			var e error
			e, err = parseCarbon(t, ev)
			report(e)
		default:
			err = t.skip()
		}
		if err != nil {
			return verr, err
		}
	}
	return verr, finish(ev)
}

// finish applies the rules that need the whole message.
func finish(ev *Evidence) error {
	if ev.Type == xstanza.ErrorMessage && ev.Error == nil {
		ev.Error = &xstanza.Error{Condition: xstanza.UndefinedCondition}
	}
	return nil
}

// optionalID returns attribute local of start, "" if absent, and reports an
// error (returning "") if it is longer than MaxIDLen.
func optionalID(start xml.StartElement, local string, report func(error)) string {
	v, _ := attr(start, local)
	if len(v) > MaxIDLen {
		report(fieldErr(start.Name.Local, local, ErrIDTooLong))
		return ""
	}
	return v
}

func (t *tokens) parseJID(dst *jid.JID, a xml.Attr) error {
	if a.Value == "" {
		return nil
	}
	if len(a.Value) > MaxIDLen {
		return fieldErr("message", a.Name.Local, ErrIDTooLong)
	}
	var j jid.JID
	var err error
	if t.jids != nil {
		j, err = t.jids.parse(a.Value)
	} else {
		j, err = jid.Parse(a.Value)
	}
	if err != nil {
		return fieldErr("message", a.Name.Local, ErrInvalidJID)
	}
	*dst = j
	return nil
}

func messageType(s string) xstanza.MessageType {
	switch t := xstanza.MessageType(s); t {
	case xstanza.ChatMessage, xstanza.ErrorMessage, xstanza.GroupChatMessage, xstanza.HeadlineMessage:
		return t
	}
	return xstanza.NormalMessage
}

// parseCarbon reads a carbons <sent/> or <received/> wrapper whose start was
// just read: the first <forwarded/> and in it the first <message/>.
func parseCarbon(t *tokens, ev *Evidence) (verr, err error) {
	seenForwarded := false
	for {
		tok, err := t.next()
		if err != nil {
			return verr, unexpectedEOF(err)
		}
		switch tok := tok.(type) {
		case xml.EndElement:
			return verr, nil
		case xml.StartElement:
			if seenForwarded || tok.Name.Space != NSForward || tok.Name.Local != "forwarded" {
				err = t.skip()
			} else {
				seenForwarded = true
				verr, err = parseForwarded(t, ev)
			}
			if err != nil {
				return verr, err
			}
		}
	}
}

// parseForwarded reads a <forwarded/> whose start was just read.
func parseForwarded(t *tokens, ev *Evidence) (verr, err error) {
	for {
		tok, err := t.next()
		if err != nil {
			return verr, unexpectedEOF(err)
		}
		switch tok := tok.(type) {
		case xml.EndElement:
			return verr, nil
		case xml.StartElement:
			if ev.Forwarded != nil || tok.Name.Local != "message" || !isStanzaNS(tok.Name.Space) {
				err = t.skip()
			} else {
				inner := new(Evidence)
				ev.Forwarded = inner
				verr, err = parseMessage(t, tok, inner, true)
			}
			if err != nil {
				return verr, err
			}
		}
	}
}

// parseError reads a stanza <error/> whose start was just read.
func parseError(t *tokens, start xml.StartElement) (*xstanza.Error, error) {
	e := &xstanza.Error{}
	defer func() {
		if e.Condition == "" {
			e.Condition = xstanza.UndefinedCondition
		}
	}()
	for _, a := range start.Attr {
		if a.Name.Space != "" {
			continue
		}
		switch a.Name.Local {
		case "type":
			switch typ := xstanza.ErrorType(a.Value); typ {
			case xstanza.Auth, xstanza.Cancel, xstanza.Continue, xstanza.Modify, xstanza.Wait:
				e.Type = typ
			}
		case "by":
			if a.Value != "" && len(a.Value) <= MaxIDLen {
				// An invalid by is dropped: it is informational only.
				e.By, _ = jid.Parse(a.Value)
			}
		}
	}
	for {
		tok, err := t.next()
		if err != nil {
			return e, unexpectedEOF(err)
		}
		switch tok := tok.(type) {
		case xml.EndElement:
			return e, nil
		case xml.StartElement:
			switch {
			case tok.Name.Space == nsStanzas && tok.Name.Local == "text":
				err = readErrorText(t, tok, e)
			case tok.Name.Space == nsStanzas && e.Condition == "":
				e.Condition = condition(tok.Name.Local)
				err = t.skip()
			default:
				err = t.skip()
			}
			if err != nil {
				return e, err
			}
		}
	}
}

// readErrorText reads a <text/> of a stanza error into e.Text, keeping the first
// text per language and at most maxErrorTexts of them.
func readErrorText(t *tokens, start xml.StartElement, e *xstanza.Error) error {
	var lang string
	for _, a := range start.Attr {
		if a.Name.Space == nsXML && a.Name.Local == "lang" {
			lang = a.Value
		}
	}
	if len(lang) > maxLangLen || len(e.Text) >= maxErrorTexts {
		return t.skip()
	}
	if _, dup := e.Text[lang]; dup {
		return t.skip()
	}
	s, _, err := t.text(MaxBodyLen)
	if err != nil || s == "" {
		return err
	}
	if e.Text == nil {
		e.Text = make(map[string]string, 1)
	}
	e.Text[lang] = s
	return nil
}
