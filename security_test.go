package xmpptrack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestBadInput walks a numbered catalogue of bad inputs a tracker must
// survive (forged, duplicated, late or malformed evidence from peers and
// from the server); its subtests are named rowNN after it. These are the
// rows it does not cover here, each with the test that does.
var badInputElsewhere = map[int]string{
	14: "MUC markers by message id in rooms with XEP-0359: package muc",
	15: "MUC stanza-ids in rooms without urn:xmpp:sid:0: package muc",
	16: "two stanza-ids with the same by: package muc (1:1 evidence never uses stanza-ids)",
	17: "MUC reflections with a rewritten id: package muc",
	18: "MUC history replay after rejoining: package muc",
	19: "own reflections after a nick change or from another own device: package muc",
	36: "errors for MUC messages and suspect room membership: muc TestBadInputMUCRow36",
	// Stream management lives in package sm; each row names the test there.
	20: "sm: TestHandledCountTooHigh, TestResumedInvalid (h too high)",
	21: "sm: TestAckReleasesInOrderAndIgnoresStaleH (backwards h is a no-op, nothing is un-acked)",
	22: "sm: TestInvalidAck",
	23: "sm: TestWrapAround",
	24: "sm: TestAckReleasesInOrderAndIgnoresStaleH (repeated and unsolicited h)",
	25: "sm: TestAnswersRStorm",
	26: "sm: TestEnabledWithoutResume",
	27: "sm: TestResumedInvalid (other previd, missing h)",
	28: "sm: TestResumeFailed (h resend, h report lost)",
	29: "sm: TestResumeFailed (no h resend, no h report lost)",
	30: "sm: TestEnableFailed",
}

// badInputEnv is one client logged in to a scripted server, with helpers
// to check what it did with peers' input.
type badInputEnv struct {
	t      *testing.T
	srv    *peerServer
	c      *Client
	pc     *peerConn
	app    *appLog
	n      int       // stanzas injected, for unique ids
	others []element // messages the client wrote that no check expected
	last   string    // id of the last barrier's marker
}

func newBadInputEnv(t *testing.T, cfg Config) *badInputEnv {
	e := &badInputEnv{t: t, srv: newPeerServer(t), app: newAppLog()}
	cfg.Handler = e.app
	e.c = dialPeer(t, e.srv, cfg)
	e.pc = e.srv.next(t)
	return e
}

// send sends m (to bob unless m.To is set), waits for the server's ack and
// consumes the message from what the client wrote.
func (e *badInputEnv) send(m Message) *tracking.MessageTracker {
	e.t.Helper()
	if m.To.Equal(jid.JID{}) {
		m.To = bob
	}
	tr := sendAcked(e.t, e.c, m)
	e.written(func(w element) bool { return w.attr("id") == tr.ID() })
	return tr
}

// written reads what the client writes until a message matches; the ones
// before it are kept as unexpected.
func (e *badInputEnv) written(match func(element) bool) element {
	e.t.Helper()
	for {
		w := e.pc.nextMessage(e.t)
		if match(w) {
			return w
		}
		e.others = append(e.others, w)
	}
}

// inject writes raw XML to the client.
func (e *badInputEnv) inject(format string, args ...any) {
	e.n++
	e.pc.send(format, args...)
}

// barrier proves that the stream is not stalled and that everything
// injected before it was processed: a valid receipt and a displayed
// marker for a fresh message in another conversation move it to
// SeenByRecipient, so it does not count as pending afterwards.
func (e *badInputEnv) barrier() {
	e.t.Helper()
	tr := e.send(Message{To: jid.MustParse("zed@example.org")})
	e.inject(`<message from='zed@example.org/x' id='barrier-r%d' type='chat'>%s</message>`, e.n, receiptFor(tr.ID()))
	waitState(e.t, tr, tracking.DeliveredToRecipient)
	e.last = fmt.Sprintf("barrier-d%d", e.n)
	e.inject(`<message from='zed@example.org/x' id='%s' type='chat'><displayed xmlns='%s' id='%s'/></message>`, e.last, stanza.NSMarkers, tr.ID())
	waitState(e.t, tr, tracking.SeenByRecipient)
	e.app.waitFor(e.t, e.last) // the application runs behind the reader
}

// noAnswer checks that the client answered nothing since the last check:
// it answers a probe, and wrote nothing before that answer.
func (e *badInputEnv) noAnswer() {
	e.t.Helper()
	id := fmt.Sprintf("probe-%d", e.n)
	e.inject(`<message from='probe@example.org/x' id='%s' type='chat'><body>probe</body><request xmlns='urn:xmpp:receipts'/></message>`, id)
	e.written(func(w element) bool {
		r := w.child(stanza.NSReceipts, "received")
		return r != nil && r.attr("id") == id
	})
	if len(e.others) > 0 {
		for _, w := range e.others {
			e.t.Errorf("the client wrote %s", w.String())
		}
		e.others = nil
	}
}

// pending checks the number of pending trackers.
func (e *badInputEnv) pending(want int) {
	e.t.Helper()
	if n := e.c.reg.Pending(); n != want {
		e.t.Errorf("%d trackers pending, want %d", n, want)
	}
}

// finish runs at the end of every row: the client is still up, the stream
// is not stalled, and the client wrote nothing that no check expected.
func (e *badInputEnv) finish() {
	e.t.Helper()
	e.barrier()
	if !e.c.cfg.NoReceipts { // else nothing answers the probe
		e.noAnswer()
	}
	if err := e.c.Err(); err != nil {
		e.t.Errorf("client stopped: %v", err)
	}
	select {
	case <-e.c.Done():
		e.t.Error("client stopped")
	default:
	}
}

const (
	carbonsNS = "urn:xmpp:carbons:2"
	forwardNS = "urn:xmpp:forward:0"
)

// carbon wraps inner, a message, in a carbon of the kind (sent or
// received) from from.
func carbon(from, kind, id, inner string) string {
	inner = strings.Replace(inner, "<message", "<message xmlns='jabber:client'", 1)
	f := ""
	if from != "" {
		f = fmt.Sprintf(" from='%s'", from)
	}
	return fmt.Sprintf(`<message%s to='alice@localhost/phone' id='%s' type='chat'><%s xmlns='%s'><forwarded xmlns='%s'>%s</forwarded></%s></message>`,
		f, id, kind, carbonsNS, forwardNS, inner, kind)
}

func displayedFor(id string) string {
	return fmt.Sprintf(`<displayed xmlns='%s' id='%s'/>`, stanza.NSMarkers, id)
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name  string
		run   func(t *testing.T, e *badInputEnv) // over a scripted connection, in parallel
		alone func(t *testing.T)                 // by itself (it measures memory)
	}{
		{name: "row01_receipt_from_third_party", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			for _, from := range []string{"carol@example.org/pc", "carol@example.org", "example.org", "mallory@evil.example/x", "bob@example.org.evil.example/pc", "bob@evil.example/pc"} {
				e.inject(`<message from='%s' id='x%d' type='chat'>%s</message>`, from, e.n, receiptFor(m.ID()))
				e.inject(`<message from='%s' id='x%d' type='chat'><received xmlns='%s' id='%s'/></message>`, from, e.n, stanza.NSMarkers, m.ID())
				e.inject(`<message from='%s' id='x%d' type='chat'>%s</message>`, from, e.n, displayedFor(m.ID()))
			}
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.pending(1)
			// The recipient, from any resource, still counts.
			e.inject(`<message from='bob@example.org/other' id='ok' type='chat'>%s</message>`, receiptFor(m.ID()))
			waitState(t, m, tracking.DeliveredToRecipient)
		}},
		{name: "row02_receipt_from_own_account", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			for _, from := range []string{"alice@localhost", "alice@localhost/laptop", "alice@localhost/phone", ""} {
				attr := ""
				if from != "" {
					attr = fmt.Sprintf(" from='%s'", from)
				}
				e.inject(`<message%s id='x%d' type='chat'>%s</message>`, attr, e.n, receiptFor(m.ID()))
				e.inject(`<message%s id='x%d' type='chat'>%s</message>`, attr, e.n, displayedFor(m.ID()))
			}
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.pending(1)
		}},
		{name: "row03_forged_carbon_dropped_whole", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			inner := fmt.Sprintf(`<message from='bob@example.org/pc' to='alice@localhost' id='in' type='chat'>%s%s<request xmlns='urn:xmpp:receipts'/></message>`,
				receiptFor(m.ID()), displayedFor(m.ID()))
			forged := []string{"tybalt@example.org", "tybalt@example.org/x", "bob@example.org/pc", "bob@example.org", "alice@localhost/laptop", "localhost"}
			for i, from := range forged {
				for _, kind := range []string{"received", "sent"} {
					e.inject("%s", carbon(from, kind, fmt.Sprintf("forged-%d-%s", i, kind), inner))
				}
			}
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.pending(1)
			e.noAnswer()
			for i := range forged {
				for _, kind := range []string{"received", "sent"} {
					if id := fmt.Sprintf("forged-%d-%s", i, kind); e.app.saw(id) {
						t.Errorf("the application got the forged carbon %s", id)
					}
				}
			}
			// The application does get what is not dropped.
			e.app.waitFor(t, e.last)
		}},
		{name: "row04_carbon_inner_from_not_recipient", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			for _, from := range []string{"carol@example.org/pc", "alice@localhost/laptop", "alice@localhost", "example.org", ""} {
				attr := ""
				if from != "" {
					attr = fmt.Sprintf(" from='%s'", from)
				}
				inner := fmt.Sprintf(`<message%s to='alice@localhost' id='in%d' type='chat'>%s</message>`, attr, e.n, receiptFor(m.ID()))
				e.inject("%s", carbon("alice@localhost", "received", fmt.Sprintf("c%d", e.n), inner))
			}
			// A carbon of a carbon: nested forwards are never unwrapped.
			nested := carbon("alice@localhost", "received", "nested-inner",
				fmt.Sprintf(`<message from='bob@example.org/pc' to='alice@localhost' id='deep' type='chat'>%s</message>`, receiptFor(m.ID())))
			e.inject("%s", carbon("alice@localhost", "received", "nested", nested))
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.pending(1)
			// The recipient's receipt in a carbon from our account counts.
			inner := fmt.Sprintf(`<message from='bob@example.org/pc' to='alice@localhost' id='ok' type='chat'>%s</message>`, receiptFor(m.ID()))
			e.inject("%s", carbon("alice@localhost", "received", "good", inner))
			waitState(t, m, tracking.DeliveredToRecipient)
		}},
		{name: "row05_duplicate_receipts", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			e.inject(`<message from='bob@example.org/pc' id='first' type='chat'>%s</message>`, receiptFor(m.ID()))
			waitState(t, m, tracking.DeliveredToRecipient)
			e.inject(`<message from='bob@example.org/laptop' id='dup1' type='chat'>%s</message>`, receiptFor(m.ID()))
			e.inject(`<message from='bob@example.org' id='dup2' type='chat'>%s</message>`, receiptFor(m.ID()))
			e.inject(`<message from='bob@example.org/pc' id='first' type='chat'>%s</message>`, receiptFor(m.ID()))
			e.inject(`<message from='bob@example.org/pc' id='dup3' type='chat'><received xmlns='%s' id='%s'/></message>`, stanza.NSMarkers, m.ID())
			e.inject("%s", carbon("alice@localhost", "received", "dup4",
				fmt.Sprintf(`<message from='bob@example.org/tab' to='alice@localhost' id='dup5' type='chat'>%s</message>`, receiptFor(m.ID()))))
			e.barrier()
			wantState(t, m, tracking.DeliveredToRecipient)
			if r := m.Response(); r == nil || r.ID != "first" || r.From.String() != "bob@example.org/pc" {
				t.Errorf("response %+v, want the first receipt's", r)
			}
			e.pending(1)
		}},
		{name: "row06_unknown_ids", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			for i := range 200 {
				id := fmt.Sprintf("unknown-%d", i)
				e.inject(`<message from='bob@example.org/pc' id='u%d' type='chat'>%s</message>`, i, receiptFor(id))
				e.inject(`<message from='bob@example.org/pc' id='v%d' type='chat'>%s</message>`, i, displayedFor(id))
				e.inject(`<message from='bob@example.org/pc' id='w%d' type='chat'><acknowledged xmlns='%s' id='%s'/></message>`, i, stanza.NSMarkers, id)
				e.inject(`<message from='bob@example.org/pc' id='y%d' type='chat'><received xmlns='%s' id='%s'/></message>`, i, stanza.NSMarkers, id)
			}
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.pending(1)
			e.noAnswer()
		}},
		{name: "row07_receipt_of_another_type", run: func(t *testing.T, e *badInputEnv) {
			chat1, chat2, chat3 := e.send(Message{}), e.send(Message{}), e.send(Message{})
			normal := e.send(Message{Type: xstanza.NormalMessage})
			e.inject(`<message from='bob@example.org/pc' id='r1' type='normal'>%s</message>`, receiptFor(chat1.ID()))
			e.inject(`<message from='bob@example.org/pc' id='r2' type='headline'>%s</message>`, receiptFor(chat2.ID()))
			e.inject(`<message from='bob@example.org/pc' id='r3'>%s</message>`, receiptFor(chat3.ID()))
			e.inject(`<message from='bob@example.org/pc' id='r4' type='chat'>%s</message>`, receiptFor(normal.ID()))
			for _, m := range []*tracking.MessageTracker{chat1, chat2, chat3, normal} {
				waitState(t, m, tracking.DeliveredToRecipient)
			}
			e.pending(4)
		}},
		{name: "row08_receipt_with_request", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			e.inject(`<message from='bob@example.org/pc' id='loop' type='chat'>%s<request xmlns='urn:xmpp:receipts'/><markable xmlns='%s'/></message>`,
				receiptFor(m.ID()), stanza.NSMarkers)
			waitState(t, m, tracking.DeliveredToRecipient)
			e.noAnswer()
			if e.c.MarkDisplayed(bob) {
				t.Error("a receipt became markable")
			}
			e.pending(1)
		}},
		{name: "row09_error_carrying_receipt_or_marker", run: func(t *testing.T, e *badInputEnv) {
			m1, m2, m3 := e.send(Message{}), e.send(Message{}), e.send(Message{})
			e.inject(`<message from='bob@example.org/pc' id='unrelated' type='error'>%s%s<request xmlns='urn:xmpp:receipts'/><markable xmlns='%s'/><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`,
				receiptFor(m1.ID()), displayedFor(m2.ID()), stanza.NSMarkers)
			e.inject(`<message from='bob@example.org/pc' id='%s' type='error'>%s<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`,
				m3.ID(), receiptFor(m3.ID()))
			e.barrier()
			wantState(t, m1, tracking.DeliveredToServer)
			wantState(t, m2, tracking.DeliveredToServer)
			wantState(t, m3, tracking.Error)
			e.noAnswer()
			if e.c.MarkDisplayed(bob) {
				t.Error("an error became markable")
			}
			e.pending(3)
		}},
		{name: "row10_displayed_older_than_displayed_point", run: func(t *testing.T, e *badInputEnv) {
			m1, m2, m3 := e.send(Message{}), e.send(Message{}), e.send(Message{})
			e.inject(`<message from='bob@example.org/pc' id='r1' type='chat'>%s</message>`, receiptFor(m1.ID()))
			e.inject(`<message from='bob@example.org/pc' id='d2' type='chat'>%s</message>`, displayedFor(m2.ID()))
			waitState(t, m2, tracking.SeenByRecipient)
			wantState(t, m1, tracking.SeenByRecipient) // proven delivered: the marker lifts it
			e.inject(`<message from='bob@example.org/pc' id='d1' type='chat'>%s</message>`, displayedFor(m1.ID()))
			e.inject(`<message from='bob@example.org/pc' id='d1b' type='chat'>%s</message>`, displayedFor(m2.ID()))
			e.barrier()
			wantState(t, m3, tracking.DeliveredToServer)
			if r := m1.Response(); r == nil || r.ID != "d2" {
				t.Errorf("m1 response %+v, want the first marker's", r)
			}
			e.pending(1)
		}},
		{name: "row11_displayed_before_received", run: func(t *testing.T, e *badInputEnv) {
			m1, m2 := e.send(Message{}), e.send(Message{})
			e.inject(`<message from='bob@example.org/pc' id='d2' type='chat'>%s</message>`, displayedFor(m2.ID()))
			waitState(t, m2, tracking.SeenByRecipient)
			e.inject(`<message from='bob@example.org/pc' id='r2' type='chat'>%s</message>`, receiptFor(m2.ID()))
			e.inject(`<message from='bob@example.org/pc' id='r1' type='chat'>%s</message>`, receiptFor(m1.ID()))
			e.inject(`<message from='bob@example.org/pc' id='e1' type='error'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`)
			e.barrier()
			// The marker came before m1's proof of delivery: it does not
			// lift m1, the receipt only makes it DELIVERED_TO_RECIPIENT.
			wantState(t, m1, tracking.DeliveredToRecipient)
			wantState(t, m2, tracking.SeenByRecipient)
			if r := m2.Response(); r == nil || r.ID != "d2" {
				t.Errorf("response %+v, want the marker's", r)
			}
			e.pending(1)
			// The next marker, after the proof, lifts it.
			e.inject(`<message from='bob@example.org/pc' id='d2b' type='chat'>%s</message>`, displayedFor(m2.ID()))
			waitState(t, m1, tracking.SeenByRecipient)
			e.pending(0)
		}},
		{name: "row12_displayed_names_incoming_message", run: func(t *testing.T, e *badInputEnv) {
			m1 := e.send(Message{})
			e.inject(`<message from='bob@example.org/pc' id='p1' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='%s'/></message>`, stanza.NSMarkers)
			e.written(func(w element) bool { // processed before m2 is sent
				r := w.child(stanza.NSReceipts, "received")
				return r != nil && r.attr("id") == "p1"
			})
			m2 := e.send(Message{})
			e.inject(`<message from='bob@example.org/pc' id='r1' type='chat'>%s</message>`, receiptFor(m1.ID()))
			e.inject(`<message from='bob@example.org/pc' id='d1' type='chat'>%s</message>`, displayedFor("p1"))
			waitState(t, m1, tracking.SeenByRecipient)
			e.barrier()
			wantState(t, m2, tracking.DeliveredToServer)
			// Our own position counts the same way.
			e.inject(`<message from='bob@example.org/pc' id='d2' type='chat'>%s</message>`, displayedFor(m2.ID()))
			waitState(t, m2, tracking.SeenByRecipient)
			e.pending(0)
		}},
		{name: "row13_marker_with_thread", run: func(t *testing.T, e *badInputEnv) {
			a1 := e.send(Message{Thread: "ta"})
			b1 := e.send(Message{Thread: "tb"})
			a2 := e.send(Message{Thread: "ta"})
			none := e.send(Message{})
			e.inject(`<message from='bob@example.org/pc' id='ra' type='chat'>%s</message>`, receiptFor(a1.ID()))
			e.inject(`<message from='bob@example.org/pc' id='rb' type='chat'>%s</message>`, receiptFor(b1.ID()))
			e.inject(`<message from='bob@example.org/pc' id='d1' type='chat'>%s<thread>ta</thread></message>`, displayedFor(a2.ID()))
			waitState(t, a2, tracking.SeenByRecipient)
			// A thread that the named message does not have covers nothing.
			e.inject(`<message from='bob@example.org/pc' id='d2' type='chat'>%s<thread>tz</thread></message>`, displayedFor(none.ID()))
			e.barrier()
			wantState(t, a1, tracking.SeenByRecipient)
			wantState(t, b1, tracking.DeliveredToRecipient)
			wantState(t, none, tracking.DeliveredToServer)
			e.pending(2)
			// Without a thread, a marker covers the whole conversation.
			e.inject(`<message from='bob@example.org/pc' id='d3' type='chat'>%s</message>`, displayedFor(none.ID()))
			waitState(t, none, tracking.SeenByRecipient)
			wantState(t, b1, tracking.SeenByRecipient)
		}},
		{name: "row31_error_from_unrelated_jid", run: func(t *testing.T, e *badInputEnv) {
			m1, m2 := e.send(Message{}), e.send(Message{})
			for _, from := range []string{"carol@example.org/pc", "carol@example.org", "evil.example", "alice@localhost/laptop", "example.org.evil.example", "conference.example.org/x"} {
				for _, m := range []*tracking.MessageTracker{m1, m2} {
					e.inject(`<message from='%s' id='%s' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, from, m.ID())
				}
			}
			e.barrier()
			wantState(t, m1, tracking.DeliveredToServer)
			wantState(t, m2, tracking.DeliveredToServer)
			// The recipient and the recipient's domain count.
			e.inject(`<message from='bob@example.org/pc' id='%s' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, m1.ID())
			e.inject(`<message from='example.org' id='%s' type='error'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, m2.ID())
			e.barrier()
			wantState(t, m1, tracking.Error)
			wantState(t, m2, tracking.Error)
			if _, err := m2.Wait(waitCtx(t), tracking.DeliveredToRecipient); !errors.Is(err, stanza.ErrNetwork) {
				t.Errorf("m2: %v", err)
			}
			e.noAnswer()
		}},
		{name: "row32_error_without_payload", run: func(t *testing.T, e *badInputEnv) {
			m1, m2 := e.send(Message{}), e.send(Message{})
			e.inject(`<message from='bob@example.org' id='%s' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, m1.ID())
			e.inject(`<message id='%s' type='error'/>`, m2.ID()) // from our server, not even an <error/>
			e.barrier()
			st, err := m1.Wait(waitCtx(t), tracking.DeliveredToRecipient)
			if st != tracking.Error || !errors.Is(err, tracking.ErrFailed) || !errors.Is(err, stanza.ErrNotAvailable) {
				t.Errorf("m1: %v, %v", st, err)
			}
			st, err = m2.Wait(waitCtx(t), tracking.DeliveredToRecipient)
			var de *stanza.DeliveryError
			if st != tracking.Error || !errors.As(err, &de) || de.Kind != nil || de.Stanza.Condition != xstanza.UndefinedCondition {
				t.Errorf("m2: %v, %v", st, err)
			}
			e.noAnswer()
			e.pending(2)
		}},
		{name: "row33_error_after_receipt_or_marker", run: func(t *testing.T, e *badInputEnv) {
			m1, m2 := e.send(Message{}), e.send(Message{To: jid.MustParse("carol@example.org")})
			e.inject(`<message from='bob@example.org/pc' id='r1' type='chat'>%s</message>`, receiptFor(m1.ID()))
			e.inject(`<message from='carol@example.org/pc' id='d2' type='chat'>%s</message>`, displayedFor(m2.ID()))
			waitState(t, m2, tracking.SeenByRecipient)
			e.inject(`<message from='bob@example.org' id='%s' type='error'><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, m1.ID())
			e.inject(`<message from='carol@example.org' id='%s' type='error'><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, m2.ID())
			e.barrier()
			wantState(t, m1, tracking.DeliveredToRecipient)
			wantState(t, m2, tracking.SeenByRecipient)
			if r := m1.Response(); r == nil || r.ID != "r1" || r.Err != nil {
				t.Errorf("m1 response %+v", r)
			}
			e.pending(1)
		}},
		{name: "row34_receipt_after_error", run: func(t *testing.T, e *badInputEnv) {
			m1, m2 := e.send(Message{}), e.send(Message{To: jid.MustParse("carol@example.org")})
			e.inject(`<message from='bob@example.org' id='%s' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, m1.ID())
			e.inject(`<message from='carol@example.org' id='%s' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, m2.ID())
			e.barrier()
			wantState(t, m1, tracking.Error)
			wantState(t, m2, tracking.Error)
			e.inject(`<message from='bob@example.org/pc' id='r1' type='chat'>%s</message>`, receiptFor(m1.ID()))
			e.inject(`<message from='carol@example.org/pc' id='d2' type='chat'>%s</message>`, displayedFor(m2.ID()))
			e.barrier() // Wait returns at once in the Error state
			wantState(t, m1, tracking.DeliveredToRecipient)
			wantState(t, m2, tracking.SeenByRecipient)
			e.pending(1)
		}},
		{name: "row35_recipient_unavailable_bounce", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			e.inject(`<message from='bob@example.org' id='%s' type='error'><error type='cancel'><recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, m.ID())
			st, err := m.Wait(waitCtx(t), tracking.DeliveredToRecipient)
			if st != tracking.Error || !errors.Is(err, tracking.ErrFailed) || !errors.Is(err, stanza.ErrOffline) {
				t.Fatalf("%v, %v", st, err)
			}
			// Nothing is re-sent, and tracking goes on: another device of
			// the recipient may still have it.
			e.noAnswer()
			e.pending(1)
			e.inject(`<message from='bob@example.org/laptop' id='r1' type='chat'>%s</message>`, receiptFor(m.ID()))
			e.barrier()
			wantState(t, m, tracking.DeliveredToRecipient)
		}},
		{name: "row37_stream_error_policy_violation", run: func(t *testing.T, e *badInputEnv) {
			// Decision (sm, "Policy violations"): a policy-violation stream
			// error makes no message fail by itself: the unacknowledged
			// messages are re-sent, one at a time, on a new stream. A
			// message refused again while it is the only one in flight
			// fails with the stream error's text and is not re-sent again;
			// acknowledged ones keep their state.
			acked := e.send(Message{})
			e.srv.set(func(srv *peerServer) { srv.noAcks, srv.noResume = true, true })
			unacked, err := e.c.Send(waitCtx(t), Message{To: bob})
			if err != nil {
				t.Fatal(err)
			}
			e.written(func(w element) bool { return w.attr("id") == unacked.ID() })
			violation := `<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>` +
				`<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too many messages</text></stream:error></stream:stream>`
			e.pc.write(violation)
			e.pc.conn.Close()
			e.pc = e.srv.next(t)
			// Re-sent on the new stream, not failed.
			e.written(func(w element) bool { return w.attr("id") == unacked.ID() })
			if st := unacked.State(); st != tracking.InTransit {
				t.Fatalf("after the first violation: %v", st)
			}
			e.srv.set(func(srv *peerServer) { srv.noAcks = false })
			e.pc.write(violation)
			e.pc.conn.Close()
			e.pc = e.srv.next(t)
			if st, err := unacked.Wait(waitCtx(t), tracking.DeliveredToServer); st != tracking.Error || !errors.Is(err, tracking.ErrFailed) {
				t.Fatalf("unacked: %v, %v; want Error", st, err)
			}
			resp := unacked.Response()
			if resp == nil || !errors.Is(resp.Err, stanza.ErrPermissionDenied) || !errors.Is(resp.Err, stream.PolicyViolation) ||
				!strings.Contains(resp.Err.Error(), "too many messages") {
				t.Errorf("response %+v", resp)
			}
			wantState(t, acked, tracking.DeliveredToServer)
			// Evidence on the next stream still counts, and lifts Error.
			e.inject(`<message from='bob@example.org/pc' id='r1' type='chat'>%s</message>`, receiptFor(acked.ID()))
			e.inject(`<message from='bob@example.org/pc' id='r2' type='chat'>%s</message>`, receiptFor(unacked.ID()))
			e.barrier() // Wait would return at once: unacked is in Error
			wantState(t, acked, tracking.DeliveredToRecipient)
			wantState(t, unacked, tracking.DeliveredToRecipient)
			e.pending(2) // finish checks that unacked was not re-sent
		}},
		{name: "row38_id_reused_across_conversations", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{ID: "shared-id"})
			e.inject(`<message from='carol@example.org/pc' id='c1' type='chat'>%s</message>`, receiptFor("shared-id"))
			e.inject(`<message from='carol@example.org/pc' id='c2' type='chat'>%s</message>`, displayedFor("shared-id"))
			e.inject(`<message from='carol@example.org/pc' id='shared-id' type='chat'><body>same id</body></message>`)
			// The recipient reuses our id for a message of its own: not a
			// receipt, and answered like any other message.
			e.inject(`<message from='bob@example.org/pc' id='shared-id' type='chat'><body>same id</body><request xmlns='urn:xmpp:receipts'/></message>`)
			answer := e.written(func(w element) bool { return w.child(stanza.NSReceipts, "received") != nil })
			if answer.attr("to") != "bob@example.org/pc" || answer.child(stanza.NSReceipts, "received").attr("id") != "shared-id" {
				t.Errorf("answer %s", answer.String())
			}
			if tr, err := e.c.Send(waitCtx(t), Message{To: jid.MustParse("carol@example.org"), ID: "shared-id"}); !errors.Is(err, tracking.ErrDuplicateID) || tr != nil {
				t.Errorf("second pending shared-id: %v, %v", tr, err)
			}
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.noAnswer()
			e.pending(1)
		}},
		{name: "row39_oversized_ids", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			long := strings.Repeat("z", stanza.MaxIDLen+1)
			huge := strings.Repeat("h", 1<<19) // below sm.DefaultMaxStanzaSize: a bigger stanza ends the connection
			e.inject(`<message from='bob@example.org/pc' id='%s' type='chat'>%s<request xmlns='urn:xmpp:receipts'/></message>`, huge, receiptFor(m.ID()))
			e.inject(`<message from='bob@example.org/pc' id='l1' type='chat'>%s%s</message>`, receiptFor(long), receiptFor(m.ID()))
			e.inject(`<message from='bob@example.org/pc' id='l2' type='chat'>%s<thread>%s</thread></message>`, displayedFor(m.ID()), long)
			e.inject(`<message from='bob@example.org/%s' id='l3' type='chat'>%s</message>`, long, receiptFor(m.ID()))
			e.inject(`<message from='bob@example.org/pc' id='l4' type='chat'>%s</message>`, receiptFor(huge))
			e.inject(`<message from='bob@example.org/pc' id='l5' type='chat'><body>x</body><request xmlns='urn:xmpp:receipts'/><origin-id xmlns='%s' id='%s'/></message>`, stanza.NSSID, huge)
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.noAnswer() // never echo an oversized id
			for _, id := range []string{"l1", "l2", "l4", "l5"} {
				if !e.app.saw(id) {
					t.Errorf("the application did not get %s", id)
				}
			}
			// A resource of 4,001 bytes is no JID (at most 1,023): dropped.
			if e.app.saw("l3") || e.c.Stats().Dropped != 1 {
				t.Errorf("a message from an address that does not parse: seen %v, Stats %+v", e.app.saw("l3"), e.c.Stats())
			}
			e.pending(1)
		}},
		{name: "row40_headline_or_offline_full_jid", run: func(t *testing.T, e *badInputEnv) {
			// Nothing may come back: the window ends tracking.
			headline, err := e.c.Send(waitCtx(t), Message{To: bob, Type: xstanza.HeadlineMessage, Window: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			full, err := e.c.Send(waitCtx(t), Message{To: jid.MustParse("bob@example.org/gone"), Window: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if full.To() != "bob@example.org/gone" { // a conversation with that resource
				t.Errorf("conversation %q", full.To())
			}
			for _, m := range []*tracking.MessageTracker{headline, full} {
				e.written(func(w element) bool { return w.attr("id") == m.ID() })
				if st, err := m.Wait(waitCtx(t), tracking.DeliveredToRecipient); st != tracking.TimedOut || !errors.Is(err, tracking.ErrTimedOut) {
					t.Errorf("%v, %v", st, err)
				}
			}
			e.pending(0)
		}},
		{name: "row41_unexpected_mam_result", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			for _, from := range []string{"alice@localhost", "bob@example.org"} {
				e.inject(`<message from='%s' id='mam%d'><result xmlns='urn:xmpp:mam:2' queryid='q1' id='a1'><forwarded xmlns='%s'><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/><message xmlns='jabber:client' from='bob@example.org/pc' to='alice@localhost' id='old' type='chat'>%s%s</message></forwarded></result></message>`,
					from, e.n, forwardNS, receiptFor(m.ID()), displayedFor(m.ID()))
			}
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.pending(1)
		}},
		{name: "row42_sent_carbon_of_own_marker", run: func(t *testing.T, e *badInputEnv) {
			m := e.send(Message{})
			for _, inner := range []string{
				fmt.Sprintf(`<message from='alice@localhost/laptop' to='bob@example.org' id='o1' type='chat'>%s</message>`, displayedFor(m.ID())),
				fmt.Sprintf(`<message from='alice@localhost/laptop' to='bob@example.org' id='o2' type='chat'>%s</message>`, receiptFor(m.ID())),
				// Even a sent carbon whose inner from claims the recipient.
				fmt.Sprintf(`<message from='bob@example.org/pc' to='alice@localhost' id='o3' type='chat'>%s</message>`, displayedFor(m.ID())),
			} {
				e.inject("%s", carbon("alice@localhost", "sent", fmt.Sprintf("s%d", e.n), inner))
			}
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.noAnswer()
			e.pending(1)
		}},
		{name: "row43_mds_item", run: func(t *testing.T, e *badInputEnv) {
			// XEP-0490 records what our own devices displayed: never
			// evidence about the recipient, for known or unknown ids.
			m := e.send(Message{})
			for _, tc := range []struct{ from, id string }{{"alice@localhost", m.ID()}, {"alice@localhost", "unknown"}, {"bob@example.org", m.ID()}} {
				e.inject(`<message from='%s' id='mds%d'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:xmpp:mds:displayed:0'><item id='bob@example.org'><displayed xmlns='urn:xmpp:mds:displayed:0'><stanza-id xmlns='%s' by='alice@localhost' id='%s'/></displayed></item></items></event></message>`,
					tc.from, e.n, stanza.NSSID, tc.id)
			}
			e.barrier()
			wantState(t, m, tracking.DeliveredToServer)
			e.pending(1)
		}},
		{name: "row06_unknown_ids_flood_bounded", alone: testFlood},
		{name: "row06_unknown_id_cost_flat", alone: testEvidenceCost},
		{name: "row39_oversized_stanza", run: testOversizedStanza},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.alone != nil {
				tc.alone(t)
				return
			}
			t.Parallel()
			e := newBadInputEnv(t, Config{})
			tc.run(t, e)
			e.finish()
		})
	}
	t.Run("rows_accounted", func(t *testing.T) {
		covered := map[int]bool{}
		for _, tc := range tests {
			var row int
			if _, err := fmt.Sscanf(tc.name, "row%d_", &row); err != nil {
				t.Errorf("%s: not named after a row", tc.name)
			}
			covered[row] = true
		}
		for row := 1; row <= 43; row++ {
			reason, elsewhere := badInputElsewhere[row]
			switch {
			case covered[row] && elsewhere:
				t.Errorf("row %d is both covered and excused", row)
			case !covered[row] && !elsewhere:
				t.Errorf("row %d is neither covered nor excused", row)
			case elsewhere && strings.HasPrefix(reason, "sm: "):
				checkSMTests(t, row, reason)
			}
		}
	})
}

// checkSMTests checks that the sm tests a reason names exist.
func checkSMTests(t *testing.T, row int, reason string) {
	files, err := filepath.Glob(filepath.Join("sm", "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sm tests: %v", err)
	}
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	for _, name := range regexp.MustCompile(`Test\w+`).FindAllString(reason, -1) {
		if !strings.Contains(all.String(), "func "+name+"(t *testing.T)") {
			t.Errorf("row %d: sm has no %s", row, name)
		}
	}
}

// testFlood feeds 100,000 pieces of evidence for unknown ids, from
// the recipient and from 100,000 strangers, and 100,000 messages that ask
// for receipts and markers: trackers and memory stay as they were, and the
// recipient's outbox and markable map stay at their bounds.
func testFlood(t *testing.T) {
	const n = 100_000
	c := newTapClient(t, Config{})
	m1 := track(t, c, "bob@example.org", "m1")
	m2 := track(t, c, "bob@example.org", "m2")
	gen := func(i int) string {
		switch i % 4 {
		case 0:
			return fmt.Sprintf(`<message from='bob@example.org/pc' id='a%d' type='chat'>%s</message>`, i, receiptFor(fmt.Sprint("unknown-", i)))
		case 1:
			return fmt.Sprintf(`<message from='stranger%d@example.net/x' id='b%d' type='chat'>%s</message>`, i, i, displayedFor("m1"))
		case 2:
			return fmt.Sprintf(`<message from='stranger%d@example.net/x' id='c%d' type='chat'><received xmlns='%s' id='m2'/>%s</message>`, i, i, stanza.NSMarkers, receiptFor("m2"))
		}
		return fmt.Sprintf(`<message from='stranger%d@example.net/x' id='d%d' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='%s'/></message>`, i, i, stanza.NSMarkers)
	}
	// Warm up with markable messages (gen's fourth kind) until the outbox
	// and the markable map are full, then measure n more of every kind.
	warm := feedTap(t, c, nil, newStanzaStream(maxMarkable+outboxSize, func(i int) string { return gen(4*i + 3) }))
	first := 4 * warm // past the warm-up's senders
	before := liveHeap()
	if fed := feedTap(t, c, nil, newStanzaStream(n, func(i int) string { return gen(first + i) })); fed != n {
		t.Fatalf("fed %d", fed)
	}
	after := liveHeap()
	for _, m := range []*tracking.MessageTracker{m1, m2} {
		wantState(t, m, tracking.InTransit)
	}
	if p := c.reg.Pending(); p != 2 {
		t.Errorf("%d pending", p)
	}
	if q := len(c.rcp.out); q != outboxSize {
		t.Errorf("outbox holds %d, want the bound %d", q, outboxSize)
	}
	c.rcp.mu.Lock()
	marks := c.rcp.marks.count()
	c.rcp.mu.Unlock()
	if marks != maxMarkable {
		t.Errorf("markable map holds %d, want the bound %d", marks, maxMarkable)
	}
	// The bounded structures churn (map tombstones, evictions), so the live
	// heap wobbles by about 1 MiB; anything kept per input (an index entry,
	// a conversation, a map slot: 20 bytes or more) would add 2 MiB or more.
	if grew := int64(after) - int64(before); grew > 2<<20 {
		t.Errorf("live heap grew by %d bytes over %d inputs", grew, n)
	}
	t.Logf("live heap %d -> %d bytes over %d inputs", before, after, n)
	// The newest stranger can still be marked: the map forgets old peers.
	last := fmt.Sprintf("stranger%d@example.net", lastOf(first+n, 3))
	c.rcp.take(nil) // room for the marker
	if !c.MarkDisplayed(jid.MustParse(last)) {
		t.Errorf("MarkDisplayed(%s) found nothing to mark", last)
	}
}

// lastOf returns the largest i < n with i%4 == k.
func lastOf(n, k int) int {
	i := n - 1
	for i%4 != k {
		i--
	}
	return i
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// testEvidenceCost: the cost of evidence for an unknown id does not
// depend on how many messages are pending (an O(1) lookup, no scan).
func testEvidenceCost(t *testing.T) {
	allocs := func(pending int) float64 {
		c := newTapClient(t, Config{MaxPending: -1})
		for i := range pending {
			track(t, c, "bob@example.org", fmt.Sprint("p", i))
		}
		ev := stanza.Evidence{From: jid.MustParse("bob@example.org/pc"), ID: "r", Type: xstanza.ChatMessage, Receipt: "unknown"}
		mk := stanza.Evidence{From: jid.MustParse("bob@example.org/pc"), ID: "d", Type: xstanza.ChatMessage,
			Marker: stanza.Marker{Type: stanza.MarkerDisplayed, ID: "unknown"}, Thread: "t"}
		var peers peerCache
		return testing.AllocsPerRun(1000, func() {
			c.observe(&ev, &peers)
			c.observe(&mk, &peers)
		})
	}
	small, large := allocs(1), allocs(50_000)
	if small != large {
		t.Errorf("allocations per unknown receipt and marker: %v with 1 pending, %v with 50,000", small, large)
	}
	t.Logf("%v allocations per unknown receipt and marker", small)
}

// testOversizedStanza: a message too large for the tap to buffer is
// not tracked, reaches the application whole, and does not stall the stream.
func testOversizedStanza(t *testing.T, e *badInputEnv) {
	m := e.send(Message{})
	pad := strings.Repeat("<x xmlns='urn:example:pad'/>", maxBufferedTokens)
	e.inject(`<message from='bob@example.org/pc' id='big' type='chat'>%s%s<request xmlns='urn:xmpp:receipts'/></message>`, pad, receiptFor(m.ID()))
	e.inject(`<message from='bob@example.org/pc' id='big2' type='chat'>%s%s</message>`, receiptFor(m.ID()), pad)
	e.barrier()
	wantState(t, m, tracking.DeliveredToServer)
	for _, id := range []string{"big", "big2"} {
		if !e.app.saw(id) {
			t.Errorf("the application did not get %s", id)
		}
	}
	e.noAnswer()
}

// TestOccupantPrivateMessageIsNoEvidence: an occupant's private message
// (type chat or normal, from room@service/nick, whose bare JID is the
// room's) carrying a receipt or marker for one of our group-chat messages
// changes nothing. Group-chat evidence is the muc package's (reflections,
// markers of type groupchat).
func TestOccupantPrivateMessageIsNoEvidence(t *testing.T) {
	e := newBadInputEnv(t, Config{})
	room := jid.MustParse("ops@conference.example.org")
	m := e.send(Message{To: room, Type: xstanza.GroupChatMessage})
	for _, typ := range []string{"chat", "normal"} {
		e.inject(`<message from='ops@conference.example.org/mallory' id='p%d' type='%s'>%s</message>`, e.n, typ, receiptFor(m.ID()))
		e.inject(`<message from='ops@conference.example.org/mallory' id='p%d' type='%s'><received xmlns='%s' id='%s'/></message>`, e.n, typ, stanza.NSMarkers, m.ID())
		e.inject(`<message from='ops@conference.example.org/mallory' id='p%d' type='%s'>%s</message>`, e.n, typ, displayedFor(m.ID()))
	}
	e.barrier()
	wantState(t, m, tracking.DeliveredToServer)
	e.pending(1)
	e.finish()
}
