package xmpptrack

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/sm"
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
