package xmpptrack

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

var (
	bob  = jid.MustParse("bob@example.org")
	room = jid.MustParse("room@conference.example.org")
)

// TestSendMessageXML checks the message Send writes for each option.
func TestSendMessageXML(t *testing.T) {
	c, pc := newPeer(t, Config{})
	payload := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "urn:example:x", Local: "x"}})
	tests := []struct {
		name         string
		m            Message
		wantType     string
		wantTo       string
		wantID       string // "" = a fresh one
		wantRequest  bool
		wantMarkable bool
		wantThread   string
		wantPayload  bool
	}{
		{"default", Message{To: bob, Body: "hi"}, "chat", "bob@example.org", "", true, true, "", false},
		{"NoReceipt", Message{To: bob, Body: "hi", NoReceipt: true}, "chat", "bob@example.org", "", false, true, "", false},
		{"NoMarkable", Message{To: bob, Body: "hi", NoMarkable: true}, "chat", "bob@example.org", "", true, false, "", false},
		{"both off", Message{To: bob, Body: "hi", NoReceipt: true, NoMarkable: true}, "chat", "bob@example.org", "", false, false, "", false},
		{"groupchat: never a receipt request", Message{To: room, Body: "hi", Type: xstanza.GroupChatMessage}, "groupchat", "room@conference.example.org", "", false, true, "", false},
		{"normal", Message{To: bob, Body: "hi", Type: xstanza.NormalMessage}, "normal", "bob@example.org", "", true, true, "", false},
		{"headline", Message{To: bob, Body: "hi", Type: xstanza.HeadlineMessage}, "headline", "bob@example.org", "", true, true, "", false},
		{"caller-chosen id", Message{To: bob, Body: "hi", ID: "my-id-1"}, "chat", "bob@example.org", "my-id-1", true, true, "", false},
		{"thread", Message{To: bob, Body: "hi", Thread: "th-1"}, "chat", "bob@example.org", "", true, true, "th-1", false},
		{"payload", Message{To: bob, Body: "hi", Payload: payload}, "chat", "bob@example.org", "", true, true, "", true},
		{"full JID", Message{To: jid.MustParse("bob@example.org/pc"), Body: "hi"}, "chat", "bob@example.org/pc", "", true, true, "", false},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := c.Send(waitCtx(t), tc.m)
			if err != nil {
				t.Fatal(err)
			}
			e := pc.nextMessage(t)
			id := e.attr("id")
			if id == "" || id != tr.ID() || seen[id] {
				t.Errorf("id %q, tracker %q (ids must be fresh)", id, tr.ID())
			}
			seen[id] = true
			if tc.wantID != "" && id != tc.wantID {
				t.Errorf("id %q, want %q", id, tc.wantID)
			}
			if tc.wantID == "" && len(id) != 22 {
				t.Errorf("fresh id %q is not 22 characters (the registry's own ids)", id)
			}
			if o := e.child(stanza.NSSID, "origin-id"); o == nil || o.attr("id") != id {
				t.Errorf("origin-id %v, want id %q", o, id)
			}
			if got := e.attr("type"); got != tc.wantType {
				t.Errorf("type %q, want %q", got, tc.wantType)
			}
			if got := e.attr("to"); got != tc.wantTo {
				t.Errorf("to %q, want %q", got, tc.wantTo)
			}
			// A message to a full JID is a conversation with that resource.
			if want := tc.wantTo; tr.To() != want {
				t.Errorf("tracker conversation %q, want %q", tr.To(), want)
			}
			if b := e.child("jabber:client", "body"); b == nil || b.Text != "hi" {
				t.Errorf("body %v", b)
			}
			if got := e.child(stanza.NSReceipts, "request") != nil; got != tc.wantRequest {
				t.Errorf("receipt request %v, want %v", got, tc.wantRequest)
			}
			if got := e.child(stanza.NSMarkers, "markable") != nil; got != tc.wantMarkable {
				t.Errorf("markable %v, want %v", got, tc.wantMarkable)
			}
			th := e.child("jabber:client", "thread")
			if (th != nil) != (tc.wantThread != "") || th != nil && th.Text != tc.wantThread {
				t.Errorf("thread %v, want %q", th, tc.wantThread)
			}
			if got := e.child("urn:example:x", "x") != nil; got != tc.wantPayload {
				t.Errorf("payload %v, want %v", got, tc.wantPayload)
			}
			waitState(t, tr, tracking.DeliveredToServer)
		})
	}
}

// TestSendRejectedIDs: a caller-chosen id that is pending already, or too
// long to ever be matched, is refused before anything is written.
func TestSendRejectedIDs(t *testing.T) {
	c, pc := newPeer(t, Config{})
	ctx := waitCtx(t)
	first, err := c.Send(ctx, Message{To: bob, ID: "dup"})
	if err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "dup" {
		t.Fatalf("wrote %s", e.String())
	}
	carol := jid.MustParse("carol@example.org")
	long := strings.Repeat("x", stanza.MaxIDLen+1)
	for _, tc := range []struct {
		name string
		m    Message
		want error
	}{
		{"same conversation", Message{To: bob, ID: "dup"}, tracking.ErrDuplicateID},
		{"other conversation", Message{To: carol, ID: "dup"}, tracking.ErrDuplicateID},
		{"longer than MaxIDLen", Message{To: bob, ID: long}, stanza.ErrIDTooLong},
	} {
		for _, try := range []bool{false, true} {
			send := c.Send
			if try {
				send = c.TrySend
			}
			tr, err := send(ctx, tc.m)
			if !errors.Is(err, tc.want) || tr != nil {
				t.Errorf("%s (TrySend %v): %v, %v; want %v", tc.name, try, tr, err, tc.want)
			}
		}
	}
	// An id of exactly MaxIDLen works end to end.
	edge := strings.Repeat("y", stanza.MaxIDLen)
	tr, err := c.Send(ctx, Message{To: bob, ID: edge})
	if err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != edge {
		t.Fatalf("wrote %.80s..., want the %d-byte id", e.String(), len(edge))
	}
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(edge))
	waitState(t, tr, tracking.DeliveredToRecipient)
	if st := first.State(); st != tracking.InTransit && st != tracking.DeliveredToServer {
		t.Errorf("first message %v", st)
	}
}

// TestSendTooManyPending: at MaxPending, TrySend fails at once with
// ErrTooManyPending and Send waits for a slot until its context ends.
func TestSendTooManyPending(t *testing.T) {
	c, pc := newPeer(t, Config{MaxPending: 2})
	m1 := sendAcked(t, c, Message{To: bob})
	sendAcked(t, c, Message{To: bob})
	pc.nextMessage(t)
	pc.nextMessage(t)
	if tr, err := c.TrySend(waitCtx(t), Message{To: bob}); !errors.Is(err, tracking.ErrTooManyPending) || tr != nil {
		t.Fatalf("TrySend at the bound: %v, %v", tr, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if tr, err := c.Send(ctx, Message{To: bob}); !errors.Is(err, context.Canceled) || tr != nil {
		t.Fatalf("Send at the bound: %v, %v", tr, err)
	}
	if n := c.reg.Pending(); n != 2 {
		t.Fatalf("%d pending", n)
	}
	// A waiting Send gets the slot that a displayed marker frees.
	got := make(chan error, 1)
	go func() {
		_, err := c.Send(waitCtx(t), Message{To: bob, ID: "third"})
		got <- err
	}()
	pc.send(`<message from='bob@example.org/pc' id='d1'><displayed xmlns='%s' id='%s'/></message>`, stanza.NSMarkers, m1.ID())
	if err := <-got; err != nil {
		t.Fatalf("waiting Send: %v", err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "third" {
		t.Fatalf("wrote %s", e.String())
	}
}

// TestClientClose: Close settles every tracker (Closed, or kept
// DeliveredToRecipient or Error), ends the client, and is idempotent.
func TestClientClose(t *testing.T) {
	c, pc := newPeer(t, Config{})
	acked := sendAcked(t, c, Message{To: bob})
	delivered := sendAcked(t, c, Message{To: bob})
	failed := sendAcked(t, c, Message{To: bob})
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(delivered.ID()))
	pc.send(`<message from='bob@example.org' id='%s' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, failed.ID())
	waitState(t, delivered, tracking.DeliveredToRecipient)
	if st, _ := failed.Wait(waitCtx(t), tracking.DeliveredToRecipient); st != tracking.Error {
		t.Fatalf("failed: %v", st)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tr      *tracking.MessageTracker
		want    tracking.MessageState
		wantErr error
	}{
		{acked, tracking.Closed, tracking.ErrClosed},
		{delivered, tracking.DeliveredToRecipient, nil},
		{failed, tracking.Error, tracking.ErrFailed},
	} {
		select {
		case <-tc.tr.Done():
		default:
			t.Errorf("%v: not settled", tc.want)
		}
		wantState(t, tc.tr, tc.want)
		if _, err := tc.tr.Wait(waitCtx(t), tracking.DeliveredToRecipient); !errors.Is(err, tc.wantErr) {
			t.Errorf("%v: Wait: %v, want %v", tc.want, err, tc.wantErr)
		}
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done is open after Close")
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err after Close: %v", err)
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob}); !errors.Is(err, ErrClientClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if _, err := c.Session(waitCtx(t)); !errors.Is(err, ErrClientClosed) {
		t.Errorf("Session after Close: %v", err)
	}
	if c.MarkDisplayed(bob) {
		t.Error("MarkDisplayed after Close queued a marker")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-pc.done:
	case <-time.After(testWait):
		t.Error("the connection is still open")
	}
}

func TestClientShutdown(t *testing.T) {
	t.Run("waits for pending trackers", func(t *testing.T) {
		app := newAppLog()
		c, pc := newPeer(t, Config{Handler: app})
		m := sendAcked(t, c, Message{To: bob})
		pc.nextMessage(t)
		shut := make(chan error, 1)
		go func() { shut <- c.Shutdown(waitCtx(t)) }()
		waitShutting(t, c)
		if _, err := c.Send(waitCtx(t), Message{To: bob}); !errors.Is(err, ErrClientClosed) {
			t.Fatalf("Send while shutting down: %v", err)
		}
		// Peers are still answered while our messages settle.
		pc.send(`<message from='bob@example.org/pc' id='q1' type='chat'><body>?</body><request xmlns='urn:xmpp:receipts'/></message>`)
		if e := pc.nextMessage(t); e.child(stanza.NSReceipts, "received") == nil || e.child(stanza.NSReceipts, "received").attr("id") != "q1" {
			t.Fatalf("wrote %s, want the receipt for q1", e.String())
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v with a message pending", err)
		default:
		}
		pc.send(`<message from='bob@example.org/pc' id='d1'><displayed xmlns='%s' id='%s'/></message>`, stanza.NSMarkers, m.ID())
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		wantState(t, m, tracking.SeenByRecipient)
		<-c.Done()
	})
	t.Run("context ends first", func(t *testing.T) {
		c, _ := newPeer(t, Config{})
		m := sendAcked(t, c, Message{To: bob})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := c.Shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown: %v", err)
		}
		wantState(t, m, tracking.Closed)
		<-c.Done()
	})
	t.Run("nothing pending", func(t *testing.T) {
		c, _ := newPeer(t, Config{})
		if err := c.Shutdown(waitCtx(t)); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		<-c.Done()
	})
}

// waitShutting waits until Shutdown has begun: Session refuses then.
func waitShutting(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		c.mu.Lock()
		shutting := c.shutting
		c.mu.Unlock()
		if shutting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Shutdown did not begin")
		}
		runtime.Gosched()
	}
}

// TestClientSessionWaitsWhileDisconnected: while the client reconnects,
// Session and Send wait; the stream is resumed and nothing is lost.
func TestClientSessionWaitsWhileDisconnected(t *testing.T) {
	srv := newPeerServer(t)
	connected := make(chan bool, 4)
	c := dialPeer(t, srv, Config{})
	c.Observe(Observer{Connected: func(resumed bool) { connected <- resumed }})
	pc := srv.next(t)
	srv.waitAccepted(t)
	old, err := c.Session(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	m1 := sendAcked(t, c, Message{To: bob})
	pc.nextMessage(t)

	gate := make(chan struct{})
	srv.set(func(srv *peerServer) { srv.hold = gate })
	pc.conn.Close()
	srv.waitAccepted(t) // the client is reconnecting: its session is gone

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s, err := c.Session(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Session while disconnected: %v, %v", s, err)
	}
	sent := make(chan *tracking.MessageTracker, 1)
	go func() {
		tr, err := c.Send(waitCtx(t), Message{To: bob, ID: "while-down"})
		if err != nil {
			t.Errorf("Send while disconnected: %v", err)
		}
		sent <- tr
	}()
	sessions := make(chan error, 1)
	go func() {
		s, err := c.Session(waitCtx(t))
		if err == nil && s == old {
			err = errors.New("got the old session")
		}
		sessions <- err
	}()
	close(gate)
	pc = srv.next(t)
	if !pc.resumed {
		t.Error("the stream was not resumed")
	}
	if err := <-sessions; err != nil {
		t.Fatalf("Session: %v", err)
	}
	m2 := <-sent
	if e := pc.nextMessage(t); e.attr("id") != "while-down" {
		t.Fatalf("wrote %s", e.String())
	}
	waitState(t, m2, tracking.DeliveredToServer)
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(m1.ID()))
	pc.send(`<message from='bob@example.org/pc' id='r2'>%s</message>`, receiptFor(m2.ID()))
	waitState(t, m1, tracking.DeliveredToRecipient)
	waitState(t, m2, tracking.DeliveredToRecipient)
	// Observers run on the callbacks' goroutine: wait for the call, which
	// publish queued before the new session was handed out.
	if resumed := recv(t, connected); !resumed {
		t.Error("Connected(false), want one call, resumed")
	}
	select {
	case resumed := <-connected:
		t.Errorf("a second Connected(%v), want one", resumed)
	default:
	}
}

// TestClientEndToEnd follows a message through every progress state and a
// peer's message through the recipient side, over one scripted connection.
func TestClientEndToEnd(t *testing.T) {
	type change struct {
		id       string
		from, to tracking.MessageState
	}
	changes := make(chan change, 16)
	app := newAppLog()
	var observed []string
	var mu sync.Mutex
	c, pc := newPeer(t, Config{
		Handler: app,
		OnStateChange: func(tr *tracking.MessageTracker, from, to tracking.MessageState, _ *tracking.Response) {
			changes <- change{tr.ID(), from, to}
		},
	})
	c.Observe(Observer{Message: func(ev *stanza.Evidence) bool {
		mu.Lock()
		observed = append(observed, ev.ID)
		mu.Unlock()
		return false
	}})
	ctx := waitCtx(t)
	tr, err := c.Send(ctx, Message{To: bob, Body: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != tr.ID() {
		t.Fatalf("wrote %s", e.String())
	}
	waitState(t, tr, tracking.DeliveredToServer)
	pc.send(`<message from='bob@example.org/pc' to='alice@localhost/phone' id='r1' type='chat'>%s</message>`, receiptFor(tr.ID()))
	waitState(t, tr, tracking.DeliveredToRecipient)
	pc.send(`<message from='bob@example.org/pc' to='alice@localhost/phone' id='p1' type='chat'><body>hi alice</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>`)
	e := pc.nextMessage(t)
	if r := e.child(stanza.NSReceipts, "received"); r == nil || r.attr("id") != "p1" || e.attr("to") != "bob@example.org/pc" {
		t.Fatalf("wrote %s, want a receipt for p1", e.String())
	}
	app.waitFor(t, "p1")
	if !c.MarkDisplayed(bob) {
		t.Fatal("MarkDisplayed found nothing to mark")
	}
	e = pc.nextMessage(t)
	if d := e.child(stanza.NSMarkers, "displayed"); d == nil || d.attr("id") != "p1" || e.attr("to") != "bob@example.org" {
		t.Fatalf("wrote %s, want a displayed marker for p1", e.String())
	}
	pc.send(`<message from='bob@example.org/pc' to='alice@localhost/phone' id='d1' type='chat'><displayed xmlns='%s' id='%s'/></message>`, stanza.NSMarkers, tr.ID())
	select {
	case <-tr.Done():
	case <-ctx.Done():
		t.Fatal("not settled")
	}
	wantState(t, tr, tracking.SeenByRecipient)
	if r := tr.Response(); r == nil || r.ID != "d1" || r.From.String() != "bob@example.org/pc" {
		t.Errorf("response %+v", r)
	}
	want := []change{
		{tr.ID(), tracking.InTransit, tracking.DeliveredToServer},
		{tr.ID(), tracking.DeliveredToServer, tracking.DeliveredToRecipient},
		{tr.ID(), tracking.DeliveredToRecipient, tracking.SeenByRecipient},
	}
	for i, w := range want {
		select {
		case got := <-changes:
			if got != w {
				t.Errorf("change %d: %+v, want %+v", i, got, w)
			}
		case <-ctx.Done():
			t.Fatalf("change %d never reported", i)
		}
	}
	for _, id := range []string{"r1", "p1", "d1"} {
		app.waitFor(t, id)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(observed, ",") != "r1,p1,d1" {
		t.Errorf("observer saw %v", observed)
	}
	if n := c.reg.Pending(); n != 0 {
		t.Errorf("%d pending", n)
	}
}

// cutBody is the body of a message too large for the socket buffers of a
// connection that the peer server cuts after cutAt bytes
// (peerServer.cutAfter): its write is still under way at the cut, and fails.
// The peer's receive buffer is made small; the client's send buffer grows up
// to the system's limit.
var cutBody = strings.Repeat("x", sendBufferLimit()+2<<20)

const cutAt = 64 << 10

// sendBufferLimit returns the largest send buffer of a TCP connection
// (Linux's tcp_wmem), or 14 MiB where it cannot tell.
func sendBufferLimit() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	f := strings.Fields(string(b))
	if err != nil || len(f) != 3 {
		return 14 << 20
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		return 14 << 20
	}
	return n
}

// cutUnderNextWrite makes the client's connection to srv break under its next
// large write: the client writes a small message, which pc reads, then the
// peer server reads cutAt bytes more and hangs up.
func cutUnderNextWrite(t *testing.T, c *Client, srv *peerServer, pc *peerConn) {
	t.Helper()
	srv.set(func(srv *peerServer) { srv.cutAfter = cutAt })
	small, err := c.Send(waitCtx(t), Message{To: bob, Body: "small"})
	if err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != small.ID() {
		t.Fatalf("wrote %s, want the small message", e.String())
	}
}

// TestSendWritesAgainAfterFailedWrite: a write that fails because the
// connection breaks under it is written again, once, with the same id, on
// the next connection. Send succeeds and the tracker goes on.
func TestSendWritesAgainAfterFailedWrite(t *testing.T) {
	logs := &logRecorder{}
	srv := newPeerServer(t)
	// The scripted server reads the megabytes before it answers the <r/>
	// behind them: under the race detector on a loaded machine that took
	// longer than the default ack bound (5 s plus the lesser of four round
	// trips and 5 s), the client took the connection for dead and wrote the
	// probe below on a third one (the client wrote nothing, on this one,
	// after 30 s; with AckTimeout 20 ms every run fails so). Dead links are
	// not what this test is about.
	c := dialPeer(t, srv, Config{Logger: slog.New(logs), StreamManagement: sm.Config{AckTimeout: testWait}})
	pc := srv.next(t)
	cutUnderNextWrite(t, c, srv, pc)
	ctx, cancel := context.WithTimeout(t.Context(), 6*testWait) // megabytes under the race detector
	defer cancel()
	tr, err := c.Send(ctx, Message{To: bob, ID: "big", Body: cutBody})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if n := logs.count("write failed"); n != 1 {
		t.Fatalf("%d failed writes logged, want 1", n)
	}
	pc = srv.next(t)
	if !pc.resumed {
		t.Error("the stream was not resumed")
	}
	e := pc.nextMessage(t)
	if b := e.child("jabber:client", "body"); e.attr("id") != "big" || b == nil || len(b.Text) != len(cutBody) {
		t.Fatalf("wrote the message with id %q, want the large one", e.attr("id"))
	}
	waitState(t, tr, tracking.DeliveredToServer)
	probe := sendAcked(t, c, Message{To: bob})
	if e := pc.nextMessage(t); e.attr("id") != probe.ID() {
		t.Fatalf("wrote the message with id %q after the large one, want the probe", e.attr("id"))
	}
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor("big"))
	waitState(t, tr, tracking.DeliveredToRecipient)
}

// TestSendContextEndsWhileReconnecting: when ctx ends before the connection
// that would take the message again, Send returns ctx's error with the
// tracker Aborted, and the message is not written later.
func TestSendContextEndsWhileReconnecting(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	srv.waitAccepted(t)
	gate := make(chan struct{})
	srv.set(func(srv *peerServer) { srv.hold = gate })
	cutUnderNextWrite(t, c, srv, pc)
	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		tr  *tracking.MessageTracker
		err error
	}
	got := make(chan result, 1)
	go func() {
		tr, err := c.Send(ctx, Message{To: bob, ID: "big", Body: cutBody})
		got <- result{tr, err}
	}()
	srv.waitAccepted(t) // the connection broke; the next one waits at the gate
	cancel()
	r := <-got
	if !errors.Is(r.err, context.Canceled) || r.tr == nil {
		t.Fatalf("Send: %v, %v; want a tracker and context.Canceled", r.tr, r.err)
	}
	wantState(t, r.tr, tracking.Aborted)
	close(gate)
	pc = srv.next(t)
	probe := sendAcked(t, c, Message{To: bob})
	if e := pc.nextMessage(t); e.attr("id") != probe.ID() {
		t.Fatalf("wrote the message with id %q, want the probe", e.attr("id"))
	}
}

// TestSendShortContexts: contexts cancelled as soon as Send returns, while
// other goroutines write on the connection (more Sends, receipts for a peer,
// ack requests), break nothing. mellium's Session.Send may apply such a
// cancellation to the connection after it returned, failing a concurrent
// write.
func TestSendShortContexts(t *testing.T) {
	const senders, each, requests = 8, 500, 500
	logs := &logRecorder{}
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{Logger: slog.New(logs), StreamManagement: sm.Config{AckEvery: 1}})
	pc := srv.next(t)
	srv.waitAccepted(t)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				ctx, cancel := context.WithTimeout(t.Context(), testWait)
				_, err := c.Send(ctx, Message{To: bob, ID: fmt.Sprintf("s%d-%d", g, i)})
				cancel()
				if err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range requests {
			pc.send(`<message from='bob@example.org/pc' id='q%d' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`, i)
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	sent, receipts := 0, 0
	for sent < senders*each || receipts < requests {
		e := pc.nextMessage(t)
		if e.child(stanza.NSReceipts, "received") != nil {
			receipts++
		} else {
			sent++
		}
	}
	for _, msg := range []string{"connection lost", "write failed", "not written"} {
		if n := logs.count(msg); n != 0 {
			t.Errorf("%q logged %d times", msg, n)
		}
	}
	select {
	case <-srv.accepted:
		t.Error("the client reconnected")
	default:
	}
}

// TestSendBadPayload: a payload that does not encode is refused before the
// message is tracked or anything is written, and the stream stays usable.
func TestSendBadPayload(t *testing.T) {
	c, pc := newPeer(t, Config{})
	x := xml.StartElement{Name: xml.Name{Space: "urn:example:x", Local: "x"}}
	bad := xml.StartElement{Name: xml.Name{Local: "1bad"}}
	for name, payload := range map[string]xml.TokenReader{
		"unclosed":    xmlstream.Token(x),
		"unopened":    xmlstream.Token(x.End()),
		"no name":     xmlstream.Token(xml.StartElement{}),
		"bad comment": xmlstream.Token(xml.Comment("a --> b")),
		"dashes":      xmlstream.Token(xml.Comment("a -- b")),
		"bad name":    xmlstream.Wrap(nil, bad),
	} {
		tr, err := c.Send(waitCtx(t), Message{To: bob, Body: "hi", Payload: payload})
		if err == nil || tr != nil {
			t.Errorf("%s: Send: %v, %v; want an error", name, tr, err)
		}
	}
	if n := c.reg.Pending(); n != 0 {
		t.Errorf("%d pending", n)
	}
	probe := sendAcked(t, c, Message{To: bob})
	if e := pc.nextMessage(t); e.attr("id") != probe.ID() {
		t.Fatalf("wrote %s, want the probe", e.String())
	}
}
