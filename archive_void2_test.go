package xmpptrack

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// voidFails fails the client's void batches (Written only, every Seq 0)
// while down is set, and counts them.
type voidFails struct {
	store.Store
	down  *atomic.Bool
	fails *atomic.Int32
}

func (s voidFails) Commit(ctx context.Context, b *store.Batch) error {
	if s.down.Load() && len(b.Written) > 0 && len(b.Messages)+len(b.Changes)+len(b.Sessions) == 0 {
		void := true
		for _, w := range b.Written {
			void = void && w.Seq == 0
		}
		if void {
			s.fails.Add(1)
			return errors.New("store down")
		}
	}
	return s.Store.Commit(ctx, b)
}

func closes(srv *peerServer) int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.closes
}

// A store that fails the void of the first resumption ends the
// connection without </stream:stream>, which would end the server's
// session (Prosody, ejabberd): the next connection resumes the stream and
// looks the held messages up.
func TestVoidFailureCutsConnection(t *testing.T) {
	st := numberedStore(t)
	down := &atomic.Bool{}
	down.Store(true)
	fails := &atomic.Int32{}
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 2 })
	dialed := dialAsync(t, srv, Config{Store: voidFails{st, down, fails}, archiveTimeout: 300 * time.Millisecond})
	pc := srv.next(t)
	if !pc.resumed {
		t.Fatal("not resumed")
	}
	<-pc.done
	down.Store(false)
	t.Logf("void failures: %d; streams closed gracefully by the client: %d", fails.Load(), closes(srv))
	if n := closes(srv); n != 0 {
		t.Errorf("the client ended the resumed stream with </stream:stream> %d times after a store error (a real server drops the SM session)", n)
	}
	go func() {
		for {
			select {
			case pc := <-srv.conns:
				go func() {
					for {
						select {
						case e := <-pc.in:
							if e.child("urn:xmpp:mam:2", "query") != nil {
								pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>`, e.attr("id"))
							}
						case <-pc.done:
							return
						}
					}
				}()
			case <-srv.closed:
				return
			}
		}
	}()
	if c := <-dialed; c != nil {
		c.Close()
	}
}

// A later resumption (the first one's voids committed, its connection lost
// during the archive check) holds the same messages back and commits
// nothing: a store down then does not end the connection.
func TestLaterResumptionVoidsNothing(t *testing.T) {
	st := numberedStore(t)
	down := &atomic.Bool{}
	fails := &atomic.Int32{}
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 2 })
	dialed := dialAsync(t, srv, Config{Store: voidFails{st, down, fails}, archiveTimeout: 5 * time.Second})
	pc := srv.next(t)
	if iq := pc.next(t); iq.child("urn:xmpp:mam:2", "query") == nil {
		t.Fatalf("wrote %s; want an archive query", iq.String())
	}
	for _, id := range []string{"m2", "m3"} {
		m, err := st.Message(waitCtx(t), id)
		if err != nil || m.Seq != 0 {
			t.Fatalf("%s: seq %d, %v; want voided", id, m.Seq, err)
		}
	}
	down.Store(true) // the store goes down (with the network, say)
	// And the connection is lost during the check: cut under TLS, as a
	// network failure does. (A TLS close would send close_notify, which
	// the client answers with </stream:stream>, and this server could
	// still read that before its own close completed.)
	pc.raw.Close()
	c := <-dialed
	if c == nil {
		t.Fatal("Dial failed")
	}
	defer c.Close()
	pc2 := srv.next(t)
	if !pc2.resumed {
		t.Fatal("not resumed")
	}
	// The held messages' numbers are voided before anything is written on
	// the resumed stream: once the archive query is written, the client
	// has decided, and a void it tried would have failed and cut the
	// connection instead.
	if iq := pc2.next(t); iq.child("urn:xmpp:mam:2", "query") == nil {
		t.Fatalf("wrote %s on the later resumption; want an archive query", iq.String())
	}
	if n := fails.Load(); n != 0 {
		t.Errorf("the later resumption committed %d voids; the voids were already committed", n)
	}
	if n := closes(srv); n != 0 {
		t.Errorf("a store outage during a later resumption ended the stream gracefully %d times; the voids were already committed", n)
	}
	select {
	case <-pc2.done:
		t.Error("the later resumption's connection ended")
	default:
	}
	down.Store(false)
}
