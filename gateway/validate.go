package gateway

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/xmltext"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Limits on fields (documented in the package docs and the OpenAPI document).
const (
	maxThread    = 256
	maxWindow    = 24 * 24 * time.Hour // the tracking package's cap
	maxSchedule  = 366 * 24 * time.Hour
	maxIdemKey   = 255
	defaultLimit = 100
	maxLimit     = 1000
)

var channelRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// outgoing is a validated request to send one message.
type outgoing struct {
	s       sender
	account string
	msg     xmpptrack.Message
	to      string // msg.To.String()
	room    bool
	channel string
	sendAt  time.Time // zero: now
	created time.Time // when the request was accepted
	wait    tracking.MessageState
	waitFor time.Duration // zero: no waiting
	// title and prio are a notification's (payload rebuilt from them).
	title string
	prio  *int
}

// rawOf returns the request to store with the message.
func (o *outgoing) rawOf() *rawRequest {
	r := &rawRequest{To: o.to, Body: o.msg.Body, Type: string(o.msg.Type), Thread: o.msg.Thread,
		Window: Duration(o.msg.Window), Channel: o.channel, Account: o.account, Title: o.title, Priority: o.prio}
	if !o.sendAt.IsZero() {
		t := o.sendAt
		r.SendAt = &t
	}
	return r
}

// status is the record of o before anything happened to it.
func (o *outgoing) status() *Status {
	st := &Status{ID: o.msg.ID, To: o.to, From: o.account, Type: string(o.msg.Type),
		Channel: o.channel, Thread: o.msg.Thread, State: State(tracking.InTransit), Created: o.created,
		History: []Change{{State: State(tracking.InTransit), At: o.created}}, raw: o.rawOf()}
	if st.Type == "" {
		st.Type = "chat"
	}
	if !o.sendAt.IsZero() {
		t := o.sendAt
		st.SendAt = &t
	}
	return st
}

// outgoingOf rebuilds a stored request (a scheduled message).
func (g *Gateway) outgoingOf(id string, r *rawRequest) (*outgoing, error) {
	o := &outgoing{}
	if p := g.validateCommon(common{r.To, r.Account, r.Type, r.Channel}, o); p != nil {
		return nil, p
	}
	o.msg.ID, o.msg.Body, o.msg.Thread, o.msg.Window = id, r.Body, r.Thread, time.Duration(r.Window)
	o.created = r.Created
	if r.SendAt != nil {
		o.sendAt = *r.SendAt
	}
	if r.Priority != nil {
		o.title, o.prio = r.Title, r.Priority
		o.msg.Payload = notifyPayload(r.Title, *r.Priority)
	}
	return o, nil
}

// common holds the fields shared by /v1/messages, /v1/notify and /v1/test.
type common struct {
	to, from, typ, channel string
}

func (g *Gateway) validateCommon(c common, o *outgoing) *problem {
	if c.to == "" {
		return fieldProblem("missing-field", "to", `"to" is required`)
	}
	to, err := jid.Parse(c.to)
	if err != nil || to.Domainpart() == "" {
		return fieldProblem("invalid-jid", "to", fmt.Sprintf("%q is not a valid XMPP address", c.to))
	}
	switch c.typ {
	case "", "chat":
		o.msg.Type = xstanza.ChatMessage
	case "groupchat":
		if to.Localpart() == "" || to.Resourcepart() != "" {
			return fieldProblem("invalid-jid", "to", "a group chat address is a room's bare JID, room@service")
		}
		o.msg.Type = xstanza.GroupChatMessage
		o.room = true
	default:
		p := fieldProblem("invalid-field", "type", fmt.Sprintf("type %q is neither chat nor groupchat", c.typ))
		p.Valid = []string{"chat", "groupchat"}
		return p
	}
	o.msg.To, o.to = to, jidString(c.to, to)
	if c.channel != "" && !channelRE.MatchString(c.channel) {
		return fieldProblem("invalid-field", "channel", "a channel is 1 to 64 letters, digits, '.', '_' or '-'")
	}
	o.channel = c.channel
	accts := g.accounts()
	name := accts.first
	if c.from != "" {
		f, err := jid.Parse(c.from)
		if err != nil {
			return fieldProblem("invalid-jid", "from", fmt.Sprintf("%q is not a valid XMPP address", c.from))
		}
		name = f.Bare().String()
	}
	s, ok := accts.m[name]
	if !ok {
		if name == "" {
			return fieldProblem("unknown-account", "from", "the gateway has no account")
		}
		return fieldProblem("unknown-account", "from", fmt.Sprintf("%s is not an account of this gateway", name))
	}
	o.s, o.account = s, name
	return nil
}

// jidString returns j.String() for j parsed from s: s itself when s is
// already the normalized form with no part over 32 bytes (the usual case),
// which costs no allocation (j.String() costs two), else j.String().
func jidString(s string, j jid.JID) string {
	// Below, parts of up to 32 bytes are converted on the stack; a longer
	// one would be copied to the heap, where j.String() costs no more for
	// a form that is not normalized, and one allocation more than the
	// copies for one that is (a domain over 32 bytes pays it on every
	// message).
	if len(s) > 32 {
		if l, d, r, err := jid.SplitString(s); err != nil || len(l) > 32 || len(d) > 32 || len(r) > 32 {
			return j.String()
		}
	}
	l, d, r := j.Localpart(), j.Domainpart(), j.Resourcepart()
	rest := s
	if l != "" {
		if len(rest) <= len(l) || rest[:len(l)] != l || rest[len(l)] != '@' {
			return j.String()
		}
		rest = rest[len(l)+1:]
	}
	if len(rest) < len(d) || rest[:len(d)] != d {
		return j.String()
	}
	rest = rest[len(d):]
	if r == "" && rest == "" {
		return s
	}
	if r != "" && len(rest) == len(r)+1 && rest[0] == '/' && rest[1:] == r {
		return s
	}
	return j.String()
}

// validText checks that s can travel in XML: valid UTF-8 of characters
// XML allows (internal/xmltext: no control characters other than tab,
// newline and carriage return, no U+FFFE or U+FFFF).
func validText(field, s string) *problem {
	if !utf8.ValidString(s) {
		return fieldProblem("invalid-field", field, field+" is not valid UTF-8")
	}
	for _, r := range s {
		if !xmltext.Char(r) {
			return fieldProblem("invalid-field", field, fmt.Sprintf("%s holds the control character U+%04X, which XML cannot carry", field, r))
		}
	}
	return nil
}

func (g *Gateway) validateWait(wait string, timeout *Duration, o *outgoing) *problem {
	switch wait {
	case "":
		if timeout != nil {
			return fieldProblem("invalid-field", "wait_timeout", `"wait_timeout" needs "wait"`)
		}
		return nil
	case "server":
		o.wait = tracking.DeliveredToServer
	case "delivered":
		o.wait = tracking.DeliveredToRecipient
	case "seen":
		o.wait = tracking.SeenByRecipient
	default:
		p := fieldProblem("invalid-field", "wait", fmt.Sprintf("wait %q is not one of server, delivered, seen", wait))
		p.Valid = []string{"server", "delivered", "seen"}
		return p
	}
	o.waitFor = min(30*time.Second, g.cfg.MaxWait)
	if timeout != nil {
		d := time.Duration(*timeout)
		if d <= 0 {
			return fieldProblem("invalid-duration", "wait_timeout", "wait_timeout must be positive")
		}
		if d > g.cfg.MaxWait {
			p := fieldProblem("wait-too-long", "wait_timeout", fmt.Sprintf("wait_timeout is at most %s", g.cfg.MaxWait))
			p.Limit = g.cfg.MaxWait.String()
			return p
		}
		o.waitFor = d
	}
	return nil
}

func validateWindow(w *Duration, o *outgoing) *problem {
	if w == nil {
		return nil
	}
	d := time.Duration(*w)
	if d < 0 {
		return fieldProblem("invalid-duration", "window", "window must not be negative")
	}
	if d > maxWindow {
		return fieldProblem("invalid-duration", "window", "window is at most "+maxWindow.String())
	}
	o.msg.Window = d
	return nil
}

func (g *Gateway) validateSendAt(at *time.Time, o *outgoing) *problem {
	if at == nil {
		return nil
	}
	if at.Sub(g.now()) > maxSchedule {
		return fieldProblem("invalid-time", "send_at", "send_at is at most a year ahead")
	}
	if at.After(g.now()) {
		o.sendAt = at.UTC()
	}
	return nil
}

// idempotencyKey returns the scoped key of the request, if any.
func idempotencyKey(h string, scope string) (string, *problem) {
	if h == "" {
		return "", nil
	}
	if len(h) > maxIdemKey {
		return "", newProblem("invalid-idempotency", fmt.Sprintf("Idempotency-Key is at most %d characters", maxIdemKey))
	}
	for _, r := range h {
		if r < 0x21 || r > 0x7e {
			return "", newProblem("invalid-idempotency", "Idempotency-Key is printable ASCII without spaces")
		}
	}
	return scope + ":" + h, nil
}

// requestHash identifies a request's content for idempotency checks.
func requestHash(route string, v any) [32]byte {
	b, _ := json.Marshal(v)
	return sha256.Sum256(append([]byte(route+"\n"), b...))
}

func trimList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
