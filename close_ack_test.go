package xmpptrack

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
)

// sessionGate wraps a store: until open is set, it fails (as a full disk
// would, so the recorder tries again) every commit of a stream-management
// state whose inbound count reaches from (0: none is held back).
type sessionGate struct {
	store.Store
	from atomic.Uint32
	open atomic.Bool
}

func (g *sessionGate) Commit(ctx context.Context, b *store.Batch) error {
	if from := g.from.Load(); from != 0 && !g.open.Load() {
		for _, s := range b.Sessions {
			if s.Inbound >= from {
				return errDiskFull
			}
		}
	}
	return g.Store.Commit(ctx, b)
}

// TestStoreCloseAckCoversFinished: with Config.Store, the final <a/> of
// Client.Close covers every stanza the application finished before Close,
// not only those the recorder's last periodic save had: Close saves the
// inbound count first. The store holds that count back until Close starts,
// so the periodic save cannot cover the stanza in time.
func TestStoreCloseAckCoversFinished(t *testing.T) {
	srv := newPeerServer(t)
	gate := &sessionGate{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db"))}
	got := make(chan string, 1)
	c := dialPeer(t, srv, Config{Store: gate, NoReceipts: true, NoCarbons: true,
		OnMessage: func(_ *Client, m *Incoming) { got <- m.ID }})
	pc := srv.next(t)
	n := c.sm.Info().Handled + 1 // in1's number
	gate.from.Store(n)
	pc.send(`<message from='bob@example.org/pc' type='chat' id='in1'><body>1</body></message>`)
	select {
	case <-got:
	case <-waitCtx(t).Done():
		t.Fatal("in1 not handed to OnMessage")
	}
	// in1 is finished once the marker queued behind its callbacks ran.
	for _, fin := c.dur.counts(); fin == 0; _, fin = c.dur.counts() {
		ran := make(chan struct{})
		c.ev.push(func() { close(ran) })
		<-ran
	}
	gate.open.Store(true)
	c.Close()
	select {
	case <-pc.done:
	case <-waitCtx(t).Done():
		t.Fatal("the connection did not end")
	}
	var last uint32
	seen := false
	for drained := false; !drained; {
		select {
		case h := <-srv.acks:
			last, seen = h, true
		default:
			drained = true
		}
	}
	if !seen || last != n {
		t.Errorf("final <a h='%d'/> (sent: %v); want h=%d, covering in1, finished before Close", last, seen, n)
	}
}
