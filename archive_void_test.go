package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// killableStore stands for a process killed at a moment the test picks:
// once killed is set, every commit fails, also one that was already on its
// way (the check comes after the inner store's delay).
type killableStore struct {
	store.Store
	killed *atomic.Bool
}

func (s killableStore) Commit(ctx context.Context, b *store.Batch) error {
	if s.killed.Load() {
		return errors.New("the process was killed")
	}
	return s.Store.Commit(ctx, b)
}

// A restarted process (P1) resumes the stored stream with h=2 and holds
// back m2 and m3, whose stored numbers are 3 and 4; the next stanza it
// writes (its archive query) takes number 3 on the stream. P1 is killed
// the moment that query reaches the server, its commits slow (a busy
// disk). The next process (P2) must not take m2 (or m3, when P1 wrote
// three query pages and the server's h exceeds the stale saved count) for
// received: the voids of their numbers were committed before P1 wrote
// anything, so P2 holds them back too and writes them again.
func TestArchiveHeldNumbersVoidedBeforeWrites(t *testing.T) {
	for _, pages := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d query pages", pages), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "track.db")
			st := openStorePath(t, path)
			seedNumbered(t, st)
			killed := &atomic.Bool{}
			srv := newPeerServer(t)
			srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 2 })
			dialed := dialAsync(t, srv, Config{Store: slowCommits{killableStore{st, killed}}})
			pc := srv.next(t)
			if !pc.resumed {
				t.Fatal("P1 did not resume")
			}
			for i := 1; ; i++ {
				iq := pc.next(t)
				if iq.child("urn:xmpp:mam:2", "query") == nil {
					t.Fatalf("P1 wrote %s, want an archive query", iq.String())
				}
				if i == pages {
					break
				}
				pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><last>p%d</last></set></fin></iq>`, iq.attr("id"), i)
			}
			killed.Store(true) // P1 dies with its query on the server
			srv.mu.Lock()
			h := srv.inH
			srv.mu.Unlock()
			hold := make(chan struct{})
			srv.set(func(srv *peerServer) { srv.hold = hold }) // P1 connects no more
			pc.conn.Close()
			if c := <-dialed; c != nil {
				c.Close()
			}
			srv.set(func(srv *peerServer) { srv.inH, srv.hold = h, nil }) // the server counted P1's queries
			close(hold)
			st.Close()

			st2 := openStorePath(t, path)
			dialed2 := dialAsync(t, srv, Config{Store: st2, archiveTimeout: 500 * time.Millisecond})
			pc2 := srv.next(t)
			if !pc2.resumed {
				t.Fatal("P2 did not resume")
			}
			wrote := map[string]chan struct{}{"m2": make(chan struct{}), "m3": make(chan struct{})}
			go func() {
				seen := map[string]bool{}
				for {
					var e element
					select {
					case e = <-pc2.in:
					case <-pc2.done:
						return
					}
					if id := e.attr("id"); e.XMLName.Local == "message" && wrote[id] != nil && !seen[id] {
						seen[id] = true
						close(wrote[id])
					}
					if e.child("urn:xmpp:mam:2", "query") != nil {
						pc2.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>`, e.attr("id"))
					}
				}
			}()
			c2 := <-dialed2
			if c2 == nil {
				t.Fatal("P2's Dial failed")
			}
			defer c2.Close()
			for _, id := range []string{"m2", "m3"} {
				select {
				case <-wrote[id]:
				case <-waitCtx(t).Done():
					tr := c2.Tracker(id)
					t.Fatalf("P2 never wrote %s (server's h %d), which the server never got; its tracker: %v", id, h, tr)
				}
				if tr := c2.Tracker(id); tr == nil || tr.State() != tracking.InTransit && tr.State() != tracking.DeliveredToServer {
					t.Errorf("%s in P2: %v", id, tr)
				}
			}
		})
	}
}
