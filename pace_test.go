package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
)

// TestSendPacedByWindow: Send waits while StreamManagement.Window messages
// are in flight, so a burst does not run ahead of the server's acks.
func TestSendPacedByWindow(t *testing.T) {
	const window = 3
	srv := newPeerServer(t)
	// No carbons: their IQ is written once the session is handed out,
	// which may be after Dial returned and after the first message below.
	// Unanswered once noAcks is set, it held a place in the window, and
	// the third Send waited: on a busy machine the test failed with "the
	// client wrote nothing".
	c := dialPeer(t, srv, Config{StreamManagement: sm.Config{Window: window}, NoCarbons: true})
	defer c.Close()
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob}) // the presence acknowledged too
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	for range window {
		if _, err := c.Send(waitCtx(t), Message{To: bob}); err != nil {
			t.Fatalf("Send within the window: %v", err)
		}
		pc.nextMessage(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, Message{To: bob}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send past the window with no ack: %v, want context.DeadlineExceeded", err)
	}
}

// writeAheads reports the ids of the messages its store writes ahead.
type writeAheads struct {
	store.Store
	ids chan<- string
}

func (s writeAheads) Commit(ctx context.Context, b *store.Batch) error {
	err := s.Store.Commit(ctx, b)
	if err == nil {
		for _, m := range b.Messages {
			s.ids <- m.ID
		}
	}
	return err
}

// TestSendWritesAheadBeforePacing: with a store, Send writes its message
// ahead before it waits for room in the send window (sm.State.Pace), so
// that concurrent senders the window holds back have their write-aheads
// committed together meanwhile. Waiting for the window first cut the
// group commit of 1,000 senders from about 200 messages to about 40.
func TestSendWritesAheadBeforePacing(t *testing.T) {
	const window, waiting = 2, 4
	srv := newPeerServer(t)
	ahead := make(chan string, 64)
	// No ack timeout: the connection held without acks stays up.
	c := dialPeer(t, srv, Config{Store: writeAheads{openStore(t), ahead}, StreamManagement: sm.Config{Window: window, AckTimeout: -1}, NoCarbons: true})
	defer c.Close()
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob})
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	for range window {
		if _, err := c.Send(waitCtx(t), Message{To: bob}); err != nil {
			t.Fatalf("Send within the window: %v", err)
		}
		pc.nextMessage(t)
	}
	ctx, cancel := context.WithCancel(waitCtx(t))
	defer cancel()
	errs := make(chan error, waiting)
	for i := range waiting {
		go func() {
			_, err := c.Send(ctx, Message{To: bob, ID: fmt.Sprint("w", i)})
			errs <- err
		}()
	}
	got := map[string]bool{}
	wait := waitCtx(t)
	for len(got) < waiting {
		select {
		case id := <-ahead:
			if strings.HasPrefix(id, "w") {
				got[id] = true
			}
		case <-wait.Done():
			t.Fatalf("%d of %d senders held back by a full window wrote ahead", len(got), waiting)
		}
	}
	cancel() // they still wait for the window: nothing was written
	for range waiting {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("Send held back by the window, its ctx cancelled: %v", err)
		}
	}
}
