package sm

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"slices"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// BindOrResume wraps the resource binding feature (usually
// xmpp.BindResource()) so that a connection resumes the previous stream
// instead of binding when it can. Put it in the feature list in place of
// bind, never next to it: it has the same name, and mellium negotiates
// the first feature of a name.
//
// When the state holds a resumable stream and the server offers stream
// management, the feature sends <resume previd h/> and:
//
//   - on <resumed h/>: releases the stanzas h covers (their OnAcked calls
//     run in Start), keeps the rest for Start to retransmit (except those
//     held back for Config.OnAmbiguous: on the first resumption after
//     Restore, every restored message h does not cover), restores the
//     full JID of the stream and completes negotiation without binding;
//   - on <failed/>: releases the stanzas its h covers, if any, forgets the
//     stream and binds; Start applies the Policy to the rest;
//   - on a <resumed/> that is invalid (no valid h, another previd) or whose
//     h exceeds what was sent: fails negotiation (NewSession returns a
//     *ProtocolError or a *HandledCountTooHighError, after sending the
//     stream error for the latter) and forgets the stream.
//
// Otherwise it forgets any earlier stream and binds.
func (st *State) BindOrResume(bind xmpp.StreamFeature) xmpp.StreamFeature {
	f := bind
	f.Negotiate = func(ctx context.Context, s *xmpp.Session, data interface{}) (xmpp.SessionState, io.ReadWriter, error) {
		st.mu.Lock()
		c := st.conn
		prev := st.id
		try := st.resumable && prev != "" && c != nil
		st.mu.Unlock()
		if _, offered := s.Feature(NS); offered && try {
			ok, err := st.resume(s, c, prev, st.claim())
			if err != nil {
				return 0, nil, err
			}
			if ok {
				return xmpp.Ready, nil, nil
			}
		}
		st.mu.Lock()
		st.dropSessionLocked()
		st.mu.Unlock()
		mask, rw, err := bind.Negotiate(ctx, s, data)
		if err == nil {
			st.mu.Lock()
			st.jid = s.LocalAddr()
			st.mu.Unlock()
		}
		return mask, rw, err
	}
	return f
}

// claim returns the h of a <resume/> sent now, and makes it the inbound
// count: the stanzas received, bounded by Config.Handled (never below an
// h told before), recorded as told. The server sends again what the claim
// does not cover, and those stanzas count again, from the claim on. The
// new connection counts nothing before <resumed/>, so the count cannot
// move meanwhile.
func (st *State) claim() uint32 {
	st.ackMu.Lock()
	defer st.ackMu.Unlock()
	st.mu.Lock()
	received := st.inH
	st.mu.Unlock()
	h := st.ackFor(received)
	st.mu.Lock()
	st.inH = h
	st.mu.Unlock()
	return h
}

// resume sends <resume/> and processes the answer. ok reports a resumed
// stream; false with a nil error means "bind instead".
func (st *State) resume(s *xmpp.Session, c *conn, prev string, h uint32) (ok bool, err error) {
	st.mu.Lock()
	c.resumeOut = true // its answer may be read before the write returns
	st.mu.Unlock()
	w := s.TokenWriter()
	_, err = stanza.Resume{PrevID: prev, H: h}.WriteXML(w)
	if err == nil {
		err = w.Flush()
	}
	w.Close()
	if err != nil {
		return false, err
	}

	r := s.TokenReader()
	defer r.Close()
	d := xml.NewTokenDecoder(r)
	start, err := nextStart(d)
	if err != nil {
		return false, err
	}
	switch {
	case start.Name.Space == NS && start.Name.Local == "resumed":
		return st.resumed(s, c, d, &start, prev)
	case start.Name.Space == NS && start.Name.Local == "failed":
		var f stanza.Failed
		ferr := d.DecodeElement(&f, &start)
		st.mu.Lock()
		st.dropSessionLocked()
		tooHigh := false
		var excess uint32
		if ferr == nil && f.HasH {
			// Prosody's <failed h> counts like <resumed h>: the stanzas a
			// store does not keep count too.
			excess = st.looseLocked(f.H)
			_, tooHigh = st.ackLocked(f.H)
		}
		st.mu.Unlock()
		st.logExcess(excess, f.H)
		if tooHigh {
			st.logAt(slog.LevelWarn, "sm: <failed/> acknowledges more stanzas than were sent; h ignored", "h", f.H)
		}
		st.logAt(slog.LevelInfo, "sm: resumption failed; binding a new session",
			"condition", string(f.Condition), "h", f.H, "has_h", f.HasH)
		return false, nil
	default:
		st.mu.Lock()
		st.dropSessionLocked()
		st.mu.Unlock()
		return false, &ProtocolError{Element: start.Name.Local, Err: errUnexpected}
	}
}

// resumed processes <resumed/>.
func (st *State) resumed(s *xmpp.Session, c *conn, d *xml.Decoder, start *xml.StartElement, prev string) (bool, error) {
	var res stanza.Resumed
	err := d.DecodeElement(&res, start)
	if err == nil && res.PrevID != prev {
		err = errPrevID
	}
	st.mu.Lock()
	if err == nil && int32(res.H-st.ackedH) < 0 {
		// A server cannot unhandle what it acknowledged: taken as is, such
		// an h would renumber the retransmissions below the server's count.
		err = errHBackwards
	}
	if err != nil {
		st.dropSessionLocked()
		st.mu.Unlock()
		return false, &ProtocolError{Element: "resumed", Err: err}
	}
	prior := len(st.retransmit)
	// The first resumption since Restore: every stanza in the queue was
	// restored from a store (nothing is written before it).
	first := st.loose
	excess := st.looseLocked(res.H)
	st.loose = false
	_, tooHigh := st.ackLocked(res.H)
	if tooHigh {
		sent := st.outH
		st.dropSessionLocked()
		st.mu.Unlock()
		herr := &HandledCountTooHighError{H: res.H, SendCount: sent}
		sendStreamError(s, herr)
		return false, herr
	}
	// Whatever h did not cover is retransmitted by Start, numbered from h,
	// followed by what an interrupted earlier retransmission did not
	// re-send (it came later in the original order).
	// The stanzas restored without a recorded number that h covers
	// (ackLocked kept them after the prior ones) come first: they were
	// written, if at all, before the rest.
	held := slices.Clone(st.retransmit[prior:])
	all := append(held, st.queue.drain(nil)...)
	st.retransmit = append(all, st.retransmit[:prior]...)
	st.outH, st.ackedH = res.H, res.H
	c.resumed, c.smOn = true, true
	c.lastAct = timeNow()
	c.outActive.Store(true)
	addr := st.jid
	// The numbers of those stanzas are guesses in the order they were
	// written ahead; they may have reached the wire in another order. Once
	// h covers one guessed number, any of them may be the one the server
	// got, so each is reported (or, with Config.OnAmbiguous, held back for
	// the caller to settle), as is one that an earlier stream left in doubt.
	ambiguous := func(e entry) bool { return e.unsure && e.raw != nil && (len(held) > 0 || e.doubt) }
	var maybe []entry
	if st.cfg.OnAmbiguous != nil {
		// On the first resumption after Restore, h does not prove that
		// the server lacks a restored message it does not cover either:
		// the session of the previous process's connection may still
		// route what it had read from it after it handed its count over
		// (ejabberd 23.01). So every restored message h does not cover
		// is held back too, for the caller to settle.
		st.holdLocked(func(e entry) bool {
			return ambiguous(e) || first && e.raw != nil && e.kind == kindMessage
		})
	} else {
		for _, e := range st.retransmit {
			if ambiguous(e) {
				maybe = append(maybe, e)
			}
		}
	}
	n := len(st.retransmit)
	st.mu.Unlock()
	s.UpdateAddr(addr)
	for _, e := range maybe {
		st.logAt(slog.LevelWarn, "sm: a stanza restored without a recorded number may have reached the server; sending it again (the recipient may get it twice)",
			"stanza", e.kind.stanzaName(), "id", e.id, "assumed_seq", e.seq, "h", res.H)
	}
	st.logExcess(excess, res.H)
	st.logAt(slog.LevelInfo, "sm: stream resumed", "h", res.H, "retransmit", n)
	return true, nil
}

// maxLooseExcess bounds how many stanzas the server's first answer to the
// resumption of a restored stream may count beyond the restored count (see
// looseLocked): far more than a store that saves its count every few
// milliseconds leaves unsaved, far less than an h that is garbage.
const maxLooseExcess = 1 << 16

// looseLocked takes the h of the first answer (<resumed/> or <failed/>) to
// the resumption of a stream restored from a store (st.loose), and returns
// how many stanzas it counts beyond the restored count: the stanzas the
// store does not keep (receipts, presence, IQs), written after it saved
// the count, which the server counted. They are counted now, without
// entries (there is no stanza to report), so that ackLocked accepts h.
// Every stanza restored without a recorded number is then covered by h, and
// so may have reached the server: ackLocked keeps each to be settled as
// such (held for Config.OnAmbiguous, or sent again), never taken as
// received. An h more than maxLooseExcess beyond, or any h on a later
// answer, is judged as usual (too high ends the stream).
func (st *State) looseLocked(h uint32) uint32 {
	d := int32(h - st.outH)
	if !st.loose || d <= 0 || d > maxLooseExcess {
		return 0
	}
	st.outH = h
	return uint32(d)
}

// logExcess logs what looseLocked counted.
func (st *State) logExcess(excess, h uint32) {
	if excess > 0 {
		st.logAt(slog.LevelInfo, "sm: the server counted stanzas written after the store saved the count; stanzas restored without a recorded number are settled as possibly received",
			"h", h, "beyond_saved_count", excess)
	}
}

// nextStart returns the next start element, skipping white space.
func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData, xml.Comment, xml.ProcInst:
		default:
			return xml.StartElement{}, &ProtocolError{Element: "?", Err: errUnexpected}
		}
	}
}

// sendStreamError writes the stream error err stands for and closes the
// output stream, during negotiation (Serve does this itself afterwards).
func sendStreamError(s *xmpp.Session, err error) {
	var se stream.Error
	if !errors.As(err, &se) {
		return
	}
	w := s.TokenWriter()
	_, werr := xmlstream.Copy(w, se.TokenReader())
	if werr == nil {
		w.Flush()
	}
	w.Close()
	s.Close()
}
