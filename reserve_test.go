package xmpptrack

import (
	"context"
	"encoding/xml"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
)

// fullQueue dials a client with MaxUnacked 1 whose one place is taken by a
// message the server does not acknowledge (it holds its acks).
func fullQueue(t *testing.T, cfg Config) (*Client, *peerServer, *peerConn) {
	t.Helper()
	srv := newPeerServer(t)
	cfg.StreamManagement = sm.Config{MaxUnacked: 1}
	c := dialPeer(t, srv, cfg)
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob})
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	if _, err := c.Send(waitCtx(t), Message{To: bob}); err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	return c, srv, pc
}

// replyHandler writes a message for every message it gets.
var replyHandler = xmpp.HandlerFunc(func(rw xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "message" {
		return nil
	}
	_, err := xmlstream.Copy(rw, xstanza.Message{To: bob, Type: xstanza.ChatMessage}.Wrap(nil))
	return err
})

// TestHandlerOutputThenIQ: Handler output while the queue of
// unacknowledged stanzas is full, then an IQ request. The output used to
// wait for room (Reserve) on the callbacks goroutine, and the IQ made the
// reader wait for that goroutine, so no ack was read that could make room:
// the IQ was never answered and the client was stuck until Close. The
// output is written at once now, and the IQ answered. (From the review of
// e0998ab.)
func TestHandlerOutputThenIQ(t *testing.T) {
	_, _, pc := fullQueue(t, Config{Handler: replyHandler, NoReceipts: true})
	pc.send(`<message from='bob@example.org/pc' type='chat' id='q1'><body>hi</body></message>`)
	pc.send(`<iq from='bob@example.org/pc' type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>`)
	got := make(chan string, 2)
	go func() {
		for range 2 {
			got <- pc.next(t).XMLName.Local
		}
	}()
	for _, want := range []string{"message", "iq"} {
		select {
		case name := <-got:
			if name != want {
				t.Fatalf("got <%s/>, want <%s/>", name, want)
			}
		case <-time.After(15 * time.Second): // a guard, not a measure
			t.Fatalf("no <%s/> in 15 s: the reader waits for a Handler stuck waiting for room", want)
		}
	}
}

// TestSendReleasesReserve: Send gives its place in MaxUnacked back after
// the write; a leaked place would block the third of ten sequential
// sends with MaxUnacked 2.
func TestSendReleasesReserve(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{StreamManagement: sm.Config{MaxUnacked: 2}})
	srv.next(t)
	for range 10 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // a guard
		if _, err := c.Send(ctx, Message{To: bob}); err != nil {
			cancel()
			t.Fatalf("Send: %v (a place in MaxUnacked leaked?)", err)
		}
		cancel()
	}
}

// gateStore wraps a store: while hold is set, a commit of new messages (a
// write-ahead) reports on entered, if there is room, and waits for gate to
// be closed.
type gateStore struct {
	store.Store
	hold    atomic.Bool
	entered chan struct{}
	gate    chan struct{}
}

func newGateStore(t *testing.T) *gateStore {
	return &gateStore{Store: openStore(t), entered: make(chan struct{}, 1), gate: make(chan struct{})}
}

func (g *gateStore) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Messages) > 0 && g.hold.Load() {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.Commit(ctx, b)
}

// TestAnswersBoundWithReservedPlaces: receipts take their places in
// StreamManagement.MaxUnacked with the stanzas unacknowledged, not with
// the places senders hold (a Send holds its place through the store's
// write-ahead): with MaxUnacked 4 and a Send held there, 4 receipts go out,
// and the queue exceeds MaxUnacked by that Send's place only once it is
// written (see sm.Config.MaxUnacked). Counted with every place, only 3
// went out while the store held the Send.
func TestAnswersBoundWithReservedPlaces(t *testing.T) {
	const limit = 4
	gs := newGateStore(t)
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{Store: gs, StreamManagement: sm.Config{MaxUnacked: limit, Window: -1}})
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob}) // presence acknowledged too
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	gs.hold.Store(true)
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(waitCtx(t), Message{To: bob, Body: "held"})
		sent <- err
	}()
	<-gs.entered // its place is taken: Reserve comes before the write-ahead
	if got := c.sm.Info().Reserved; got != 1 {
		t.Fatalf("%d places reserved during the write-ahead, want 1", got)
	}
	for i := range 10 {
		pc.send(`<message from='bob@example.org/pc' type='chat' id='q%d'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`, i)
	}
	receipts := 0
	for receipts < limit { // while the store holds the Send
		if e := pc.nextMessage(t); e.child("urn:xmpp:receipts", "received") != nil {
			receipts++
		}
	}
	close(gs.gate)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	for e := pc.nextMessage(t); e.child("urn:xmpp:receipts", "received") != nil; e = pc.nextMessage(t) {
		receipts++
	}
	if info := c.sm.Info(); receipts != limit || info.Unacked > limit+1 {
		t.Fatalf("%d receipts and %d stanzas unacknowledged with MaxUnacked %d and one place reserved; want %d and at most %d",
			receipts, info.Unacked, limit, limit, limit+1)
	}
}

// TestReceiptsNotHeldByStore: a receipt goes out while the only place in
// MaxUnacked is held by a Send in the store's write-ahead (the server
// acknowledged everything): a stalled store must not hold back, and once
// the outbox is full drop, the peer's proofs.
func TestReceiptsNotHeldByStore(t *testing.T) {
	gs := newGateStore(t)
	c, pc := newPeer(t, Config{Store: gs, StreamManagement: sm.Config{MaxUnacked: 1, Window: -1}})
	gs.hold.Store(true)
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(waitCtx(t), Message{To: bob, Body: "held"})
		sent <- err
	}()
	<-gs.entered
	pc.send(`<message from='bob@example.org/pc' type='chat' id='q1'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`)
	if e := pc.nextMessage(t); e.child("urn:xmpp:receipts", "received") == nil {
		t.Fatalf("the client wrote %v before the receipt, with the Send held in the write-ahead", e.XMLName)
	}
	close(gs.gate)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// TestSendNoRoomStoresNothing: Send takes its place in MaxUnacked before
// the store's write-ahead (see sm.Config.MaxUnacked), so one that finds no
// room waits with nothing stored, and leaves no record when its ctx ends;
// the write-aheads in flight are bounded by MaxUnacked.
func TestSendNoRoomStoresNothing(t *testing.T) {
	gs := newGateStore(t)
	c, _ := newPeer(t, Config{Store: gs, StreamManagement: sm.Config{MaxUnacked: 1, Window: -1}})
	gs.hold.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := c.Send(waitCtx(t), Message{To: bob, ID: "first"})
		first <- err
	}()
	<-gs.entered // the first holds the one place through its write-ahead
	ctx, cancel := context.WithCancel(waitCtx(t))
	second := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, Message{To: bob, ID: "second"})
		second <- err
	}()
	cancel() // waiting for room, or about to: either way it gets no place
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with no room in MaxUnacked: %v; want context.Canceled", err)
	}
	select {
	case <-gs.entered:
		t.Fatal("a Send with no room in MaxUnacked wrote ahead")
	default:
	}
	close(gs.gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(waitCtx(t), "second"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the record of a Send that had no room: %v; want store.ErrNotFound", err)
	}
}
