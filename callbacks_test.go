package xmpptrack

import (
	"encoding/xml"
	"fmt"
	"runtime"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// closeFrom runs a client whose callback (installed by setup) calls Close,
// triggers it with trigger, and checks that Close returns.
func closeFrom(t *testing.T, cfg func(closed chan<- time.Duration) Config, trigger string) {
	t.Helper()
	closed := make(chan time.Duration, 1)
	c, pc := newPeer(t, cfg(closed))
	pc.send(trigger)
	d := recv(t, closed)
	t.Logf("Close returned after %v", d)
	select {
	case <-c.Done():
	default:
		t.Error("the client is not done after Close")
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob}); err == nil {
		t.Error("Send after Close succeeded")
	}
}

func TestOnMessageCallsClose(t *testing.T) {
	closeFrom(t, func(closed chan<- time.Duration) Config {
		return Config{OnMessage: func(c *Client, m *Incoming) {
			start := time.Now()
			c.Close()
			closed <- time.Since(start)
		}}
	}, `<message from='bob@example.org/pc' type='chat' id='m1'><body>stop</body></message>`)
}

func TestHandlerCallsClose(t *testing.T) {
	for _, trigger := range []string{
		`<presence from='bob@example.org/pc' id='p1'/>`,
		`<iq from='bob@example.org/pc' type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>`,
	} {
		closeFrom(t, func(closed chan<- time.Duration) Config {
			var c *Client
			return Config{Handler: xmpp.HandlerFunc(func(xmlstream.TokenReadEncoder, *xml.StartElement) error {
				start := time.Now()
				c.Close()
				closed <- time.Since(start)
				return nil
			}), OnMessage: func(cl *Client, _ *Incoming) { c = cl }}
		}, `<message from='bob@example.org/pc' type='chat' id='m0'><body>hi</body></message>`+trigger)
	}
}

func TestObserverCallsClose(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	closed := make(chan struct{})
	c.Observe(Observer{Disconnected: func(error) {
		c.Close()
		close(closed)
	}})
	pc.conn.Close()
	recv(t, (<-chan struct{})(closed))
}

// TestCallbackSendsPastMaxPending: a callback sends 100 messages with
// MaxPending = 10; each Send waits for a slot, which the peer's markers
// free, read meanwhile by the reader.
func TestCallbackSendsPastMaxPending(t *testing.T) {
	const n = 100
	done := make(chan error, 1)
	c, pc := newPeer(t, Config{MaxPending: 10, OnMessage: func(c *Client, m *Incoming) {
		for i := range n {
			if _, err := c.Send(waitCtx(t), m.Reply(fmt.Sprint(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}})
	pc.send(`<message from='bob@example.org/pc' type='chat' id='go'><body>send</body></message>`)
	for i := 0; i < n; {
		e := pc.nextMessage(t)
		if e.child("jabber:client", "body") == nil {
			continue
		}
		pc.send(`<message from='bob@example.org/pc' type='chat' id='d%d'><displayed xmlns='%s' id='%s'/></message>`, i, stanza.NSMarkers, e.attr("id"))
		i++
	}
	if err := recv(t, done); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Pending > 10 {
		t.Errorf("Stats %+v", st)
	}
}

// TestCallbackSendAndWait: a callback may wait for the proof of its own
// message: the reader goes on meanwhile.
func TestCallbackSendAndWait(t *testing.T) {
	done := make(chan tracking.MessageState, 1)
	_, pc := newPeer(t, Config{OnMessage: func(c *Client, m *Incoming) {
		_, st, _ := c.SendAndWait(waitCtx(t), m.Reply("pong"), tracking.DeliveredToRecipient)
		done <- st
	}})
	pc.send(`<message from='bob@example.org/pc' type='chat' id='ping'><body>ping</body></message>`)
	var reply element
	for reply.child("jabber:client", "body") == nil {
		reply = pc.nextMessage(t)
	}
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(reply.attr("id")))
	if st := recv(t, done); st != tracking.DeliveredToRecipient {
		t.Errorf("SendAndWait from a callback: %v", st)
	}
}

// TestSlowCallbackBackpressure: while OnMessage is stuck, the client queues
// at most maxQueuedStanzas stanzas, then stops reading (the server's writes
// back up); once it is released, every message arrives, in order.
func TestSlowCallbackBackpressure(t *testing.T) {
	const n = 1000
	gate := make(chan struct{})
	got := make(chan string, n)
	c, pc := newPeer(t, Config{OnMessage: func(_ *Client, m *Incoming) {
		<-gate
		got <- m.ID
	}})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			pc.send(`<message from='bob@example.org/pc' type='chat' id='m%d'><body>%d</body></message>`, i, i)
		}
	}()
	// Wait until the queue is full: the reader then waits for room.
	deadline := time.Now().Add(testWait)
	for {
		c.ev.mu.Lock()
		queued := c.ev.stanzas
		c.ev.mu.Unlock()
		if queued == maxQueuedStanzas {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d stanzas queued, want %d", queued, maxQueuedStanzas)
		}
		runtime.Gosched()
	}
	close(gate)
	for i := range n {
		if id := recv(t, got); id != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %s", i, id)
		}
	}
	recv(t, (<-chan struct{})(sent))
	c.ev.mu.Lock()
	peak := c.ev.peak
	c.ev.mu.Unlock()
	if peak != maxQueuedStanzas {
		t.Errorf("at most %d stanzas queued, want %d", peak, maxQueuedStanzas)
	}
}

// TestCallbackWaitsWhileFlooded: a callback waits for the receipt of its
// reply while the peer sends more messages than the callbacks' queue holds
// before the receipt; the reader goes on reading (up to maxQueuedWaiting),
// so the callback gets its proof and every message arrives.
func TestCallbackWaitsWhileFlooded(t *testing.T) {
	const n = 2 * maxQueuedStanzas
	got := make(chan string, n+1)
	states := make(chan tracking.MessageState, 1)
	_, pc := newPeer(t, Config{OnMessage: func(c *Client, m *Incoming) {
		if m.ID == "first" {
			_, st, _ := c.SendAndWait(waitCtx(t), m.Reply("pong"), tracking.DeliveredToRecipient)
			states <- st
		}
		got <- m.ID
	}})
	pc.send(`<message from='bob@example.org/pc' type='chat' id='first'><body>ping</body></message>`)
	var reply element
	for reply.child("jabber:client", "body") == nil {
		reply = pc.nextMessage(t)
	}
	go func() {
		for i := range n {
			pc.send(`<message from='bob@example.org/pc' type='chat' id='m%d'><body>%d</body></message>`, i, i)
		}
		pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(reply.attr("id")))
	}()
	if st := recv(t, states); st != tracking.DeliveredToRecipient {
		t.Fatalf("SendAndWait from a callback: %v", st)
	}
	if id := recv(t, got); id != "first" {
		t.Fatalf("got %s first", id)
	}
	for i := range n {
		if id := recv(t, got); id != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %s", i, id)
		}
	}
}

// TestCallbackCallsShutdown: Shutdown from a callback waits for the pending
// message to settle (the reader goes on reading its marker), then closes.
func TestCallbackCallsShutdown(t *testing.T) {
	done := make(chan error, 1)
	c, pc := newPeer(t, Config{OnMessage: func(c *Client, m *Incoming) {
		done <- c.Shutdown(waitCtx(t))
	}})
	tr := sendAcked(t, c, Message{To: bob})
	pc.send(`<message from='bob@example.org/pc' type='chat' id='bye'><body>shut down</body></message>`)
	pc.send(`<message from='bob@example.org/pc' type='chat' id='d1'><displayed xmlns='%s' id='%s'/></message>`, stanza.NSMarkers, tr.ID())
	if err := recv(t, done); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wantState(t, tr, tracking.SeenByRecipient)
	recv(t, c.Done())
}
