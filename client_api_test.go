package xmpptrack

import (
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestSendRefusesNoRecipient: every send path refuses a message without a
// recipient before anything is written, with a nil tracker.
func TestSendRefusesNoRecipient(t *testing.T) {
	c, pc := newPeer(t, Config{})
	ctx := waitCtx(t)
	tr, err := c.Send(ctx, Message{Body: "to nobody"})
	if tr != nil || !errors.Is(err, stanza.ErrInvalidHandle) {
		t.Errorf("Send: %v, %v; want nil, ErrInvalidHandle", tr, err)
	}
	tr, err = c.TrySend(ctx, Message{Body: "to nobody"})
	if tr != nil || !errors.Is(err, stanza.ErrInvalidHandle) {
		t.Errorf("TrySend: %v, %v; want nil, ErrInvalidHandle", tr, err)
	}
	if _, st, err := c.SendAndWait(ctx, Message{Body: "to nobody"}, tracking.DeliveredToServer); st != tracking.Aborted || !errors.Is(err, stanza.ErrInvalidHandle) {
		t.Errorf("SendAndWait: %v, %v; want Aborted, ErrInvalidHandle", st, err)
	}
	if n := c.Stats().Pending; n != 0 {
		t.Errorf("%d trackers pending after refused sends", n)
	}
	// The next message the server gets is the first valid one.
	sendAcked(t, c, Message{To: bob, ID: "valid"})
	if e := pc.nextMessage(t); e.attr("id") != "valid" || e.attr("to") != bob.String() {
		t.Fatalf("the server got %s first", e.String())
	}
}

// TestStatsAndDisconnected: Stats counts connections and resumptions, and
// observers hear a disconnection before the next connection.
func TestStatsAndDisconnected(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	events := make(chan string, 8)
	c.Observe(Observer{
		Connected: func(resumed bool) {
			if resumed {
				events <- "connected resumed"
			} else {
				events <- "connected fresh"
			}
		},
		Disconnected: func(err error) {
			events <- "disconnected"
			c.Stats() // may call the client
		},
	})
	st := c.Stats()
	if !st.Connected || st.Reconnections != 0 || st.Resumptions != 0 || st.Pending != 0 {
		t.Fatalf("after Dial: %+v", st)
	}
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	tr, err := c.Send(waitCtx(t), Message{To: bob, ID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	if st := c.Stats(); st.Pending != 1 || st.Unacked < 1 {
		t.Errorf("with one message unacknowledged: %+v", st)
	}
	if got := c.Tracker("m1"); got != tr {
		t.Errorf("Tracker(m1) = %v, want %v", got, tr)
	}
	if got := c.Tracker("nope"); got != nil {
		t.Errorf("Tracker(nope) = %v, want nil", got)
	}
	srv.set(func(srv *peerServer) { srv.noAcks = false })
	pc.conn.Close()
	srv.next(t)
	for _, want := range []string{"disconnected", "connected resumed"} {
		if got := <-events; got != want {
			t.Fatalf("observer heard %q, want %q", got, want)
		}
	}
	waitState(t, tr, tracking.DeliveredToServer)
	st = c.Stats()
	if !st.Connected || st.Reconnections != 1 || st.Resumptions != 1 || st.Unacked != 0 {
		t.Errorf("after a resumption: %+v", st)
	}
}

// TestPublishSeesItsOwnConnection: a publish goroutine that starts late,
// after its connection was replaced, must not publish the replacement a
// second time (closing the ready channel twice would panic).
func TestPublishSeesItsOwnConnection(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	// The first publish after the hook is installed (the second
	// connection's, unless that connection ended before stream management
	// was up) waits until the third connection is logged in, so that it
	// runs late. The release is also a cleanup: a failing test must not
	// leave Close waiting for a publish held here.
	replaced := make(chan struct{})
	release := sync.OnceFunc(func() { close(replaced) })
	t.Cleanup(release)
	var calls atomic.Int32
	hook := func() {
		if calls.Add(1) == 1 {
			<-replaced
		}
	}
	c.publishHook.Store(&hook)
	pc.conn.Close()
	pc = srv.next(t) // second connection: not published
	pc.conn.Close()
	srv.next(t) // third connection: published
	release()
	if _, err := c.Session(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	sendAcked(t, c, Message{To: bob})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Reconnections != 1 {
		t.Errorf("Reconnections = %d, want 1 (the second connection never went live)", st.Reconnections)
	}
}

// TestCarbonsLeaveNothingWaiting: enabling carbons hands mellium no
// context and leaves no goroutine waiting for the answer, which a dead
// session never gives.
func TestCarbonsLeaveNothingWaiting(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.noCarbons = true })
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	for {
		e := pc.next(t)
		if e.XMLName.Local == "iq" && e.child("urn:xmpp:carbons:2", "enable") != nil {
			break
		}
	}
	pc.conn.Close()
	srv.next(t)
	if _, err := c.Session(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	for _, g := range libraryGoroutines() {
		if strings.Contains(g, "mellium.im/xmpp/carbons") {
			t.Errorf("a goroutine waits for the carbons answer of a dead session:\n%s", g)
		}
	}
}

// TestCarbonsWrittenBeforeDialReturns: the carbons IQ of a fresh session
// is written before the session goes to senders, so when Dial returns it
// was written (counted by stream management), and what the application
// sends next follows it: a test counts the queue's places exactly. The
// previous order failed this about one Dial in five or six, so the test
// dials 25 times.
func TestCarbonsWrittenBeforeDialReturns(t *testing.T) {
	for i := range 25 {
		srv := newPeerServer(t)
		srv.set(func(srv *peerServer) { srv.noCarbons = true }) // handed to the test
		c := dialPeer(t, srv, Config{})
		if sent := c.sm.Info().Sent; sent != 2 {
			t.Fatalf("dial %d: %d stanzas written when Dial returned, want 2 (presence, carbons IQ)", i, sent)
		}
		if _, err := c.Send(waitCtx(t), Message{To: bob, Body: "first"}); err != nil {
			t.Fatal(err)
		}
		pc := srv.next(t)
		var got []string
		for len(got) < 3 {
			got = append(got, pc.next(t).XMLName.Local)
		}
		if want := []string{"presence", "iq", "message"}; !slices.Equal(got, want) {
			t.Fatalf("dial %d: the server read %v, want %v", i, got, want)
		}
		c.Close()
	}
}

// TestCarbonsStaleWriterMarksNoNewStream: publish may outlive its
// connection (the loop does not wait for it before it connects again). A
// publish that wrote the carbons IQ on stream 1 and records it only after
// the next connection bound stream 2 must not mark stream 2 as having it:
// stream 2's publish writes its own. A later resumption of stream 2, once
// its IQ was written, writes none. The steps are the connection's and
// publish's own, in the order of that race.
func TestCarbonsStaleWriterMarksNoNewStream(t *testing.T) {
	c := newTapClient(t, Config{})
	due := func(cn conn) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.carbonsDueLocked(cn)
	}
	cn1 := conn{stream: c.streamFor(false)}
	if !due(cn1) {
		t.Fatal("a fresh stream's publish would not write the carbons IQ")
	}
	cn2 := conn{stream: c.streamFor(false)} // bound while publish(cn1) writes
	if due(cn1) {
		t.Error("stream 1's late publish would write the carbons IQ on a stream that is no longer current")
	}
	c.carbonsWritten(cn1) // publish(cn1) records its write late
	if !due(cn2) {
		t.Fatal("stream 2's publish would not write the carbons IQ: stream 1's late record marked it")
	}
	c.carbonsWritten(cn2)
	c.carbonsWritten(cn1) // a stale record after stream 2's must not undo it
	if cn3 := (conn{stream: c.streamFor(true), resumed: true}); due(cn3) {
		t.Error("a resumption of stream 2 would write its carbons IQ again")
	}
	if stored := (conn{resumed: true}); due(stored) {
		t.Error("a stream resumed from the store would get a carbons IQ")
	}
}

// TestCarbonsAnswerNotPassedOn: the server's answer to the carbons IQ is
// the client's own business.
func TestCarbonsAnswerNotPassedOn(t *testing.T) {
	iqs := make(chan string, 8)
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.noCarbons = true })
	dialPeer(t, srv, Config{Handler: xmpp.HandlerFunc(func(_ xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local == "iq" {
			for _, a := range start.Attr {
				if a.Name.Local == "id" {
					iqs <- a.Value
				}
			}
		}
		return nil
	})})
	pc := srv.next(t)
	for {
		e := pc.next(t)
		if e.XMLName.Local == "iq" && e.child("urn:xmpp:carbons:2", "enable") != nil {
			pc.send(`<iq type='result' id='%s' to='%s'/>`, e.attr("id"), peerFullJID)
			break
		}
	}
	// The server answered the carbons IQ before this one.
	pc.send(`<iq from='bob@example.org/pc' type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if id := <-iqs; id != "ping" {
		t.Errorf("the application got IQ %q first", id)
	}
}

// TestAnswersBoundedByMaxUnacked: receipts count against
// StreamManagement.MaxUnacked like any other stanza.
func TestAnswersBoundedByMaxUnacked(t *testing.T) {
	const limit = 4
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{StreamManagement: sm.Config{MaxUnacked: limit}})
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob}) // presence acknowledged too
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	for i := range 20 {
		pc.send(`<message from='bob@example.org/pc' type='chat' id='q%d'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`, i)
	}
	receipts := 0
	for receipts < limit {
		if e := pc.next(t); e.XMLName.Local == "message" && e.child("urn:xmpp:receipts", "received") != nil {
			receipts++
		}
	}
	// Two IQ round trips: the reader queued all 20 answers long before.
	for i := range 2 {
		pc.send(`<iq from='bob@example.org/pc' type='get' id='ping%d'><ping xmlns='urn:xmpp:ping'/></iq>`, i)
		for e := pc.next(t); e.XMLName.Local != "iq"; e = pc.next(t) {
			if e.XMLName.Local == "message" {
				t.Fatalf("answer past MaxUnacked = %d: %s", limit, e.String())
			}
		}
	}
	c.Close()
	for {
		select {
		case e := <-pc.in:
			if e.XMLName.Local == "message" {
				t.Fatalf("answer past MaxUnacked = %d: %s", limit, e.String())
			}
		default:
			return
		}
	}
}
