package xmpptrack

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// losingStore wraps a store whose leases the test loses (close lost), as a
// PostgreSQL store's are when the connection holding one breaks; after
// counts the commits that reached the store after that.
type losingStore struct {
	store.Store
	lost  chan struct{}
	after atomic.Int32
}

func newLosingStore(t *testing.T) *losingStore {
	return &losingStore{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), lost: make(chan struct{})}
}

func (s *losingStore) Lock(ctx context.Context, owner store.Instance) (store.Lease, error) {
	l, err := s.Store.Lock(ctx, owner)
	if err != nil {
		return nil, err
	}
	return losingLease{Lease: l, lost: s.lost}, nil
}

func (s *losingStore) Commit(ctx context.Context, b *store.Batch) error {
	select {
	case <-s.lost:
		s.after.Add(1)
	default:
	}
	return s.Store.Commit(ctx, b)
}

type losingLease struct {
	store.Lease
	lost chan struct{}
}

func (l losingLease) Lost() <-chan struct{} { return l.lost }

// TestStoreLeaseLost: when the store's lease is lost while the client runs
// (another process may own the account now), the client stops at once: it
// commits nothing more, drops the connection without ending the stream
// (the new owner resumes it), does not reconnect, and ends the pending
// tracker CLOSED as not final (the store keeps it pending); Done is
// closed, Err and Send report ErrLeaseLost, and the record still holds the
// message IN_TRANSIT for the next owner (review hunt-dur 1).
func TestStoreLeaseLost(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	ls := newLosingStore(t)
	changes := make(chan *tracking.Response, 8)
	c := dialPeer(t, srv, Config{Store: ls, NoReceipts: true, NoCarbons: true,
		OnStateChange: func(_ *tracking.MessageTracker, _, to tracking.MessageState, resp *tracking.Response) {
			if to == tracking.Closed {
				changes <- resp
			}
		}})
	defer c.Close()
	pc := srv.next(t)
	tr, err := c.Send(waitCtx(t), Message{To: bob, Body: "in flight"})
	if err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)

	close(ls.lost)
	waitDone(t, c)
	if err := c.Err(); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Err = %v, want ErrLeaseLost", err)
	}
	waitState(t, tr, tracking.Closed)
	select {
	case resp := <-changes:
		if resp == nil || !errors.Is(resp.Err, ErrStillPending) {
			t.Errorf("OnStateChange's CLOSED: %+v, want Err matching ErrStillPending", resp)
		}
	case <-waitCtx(t).Done():
		t.Fatal("OnStateChange heard no CLOSED")
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob, Body: "after"}); !errors.Is(err, ErrClientClosed) || !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Send after the loss: %v, want ErrClientClosed wrapping ErrLeaseLost", err)
	}
	select {
	case <-pc.done:
	case <-waitCtx(t).Done():
		t.Fatal("the connection was not dropped")
	}
	c.Close()
	if n := closes(srv); n != 0 {
		t.Errorf("%d streams ended with </stream:stream>: the new owner could not resume it", n)
	}
	if len(srv.conns) != 0 {
		t.Error("the client reconnected after losing its lease")
	}
	if n := ls.after.Load(); n != 0 {
		t.Errorf("%d commits reached the store after the lease was lost", n)
	}
	rec, err := ls.Message(waitCtx(t), tr.ID())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Settled || rec.State != tracking.InTransit {
		t.Errorf("the record of the message in flight: %v (settled %v), want IN_TRANSIT, pending", rec.State, rec.Settled)
	}
}

// TestStoreLeaseLostBeforeDial: a lease lost while Dial runs (here before
// its first connection) fails Dial with ErrLeaseLost; nothing is handed
// out.
func TestStoreLeaseLostBeforeDial(t *testing.T) {
	srv := newPeerServer(t)
	ls := newLosingStore(t)
	close(ls.lost)
	cfg := Config{Store: ls, NoCarbons: true}
	atPeer(t, srv, &cfg)
	c, err := Dial(waitCtx(t), testJID, peerPassword, &cfg)
	if err == nil {
		c.Close()
		t.Fatal("Dial handed out a client whose lease was lost")
	}
	if !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Dial: %v, want ErrLeaseLost", err)
	}
	if n := ls.after.Load(); n != 0 {
		t.Errorf("%d commits reached the store after the lease was lost", n)
	}
}

// TestStoreLeaseLostIdle: an idle client (nothing to commit) stops too.
func TestStoreLeaseLostIdle(t *testing.T) {
	srv := newPeerServer(t)
	ls := newLosingStore(t)
	c := dialPeer(t, srv, Config{Store: ls, NoCarbons: true})
	defer c.Close()
	srv.next(t)
	close(ls.lost)
	waitDone(t, c)
	if err := c.Err(); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Err = %v, want ErrLeaseLost", err)
	}
}

// waitDone waits until c stopped on its own.
func waitDone(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-waitCtx(t).Done():
		t.Fatal("the client did not stop")
	}
}

// TestStoreLeaseLostWhileDialWaits: a lease lost once the first
// connection is up, while Dial waits for it to be handed out, fails Dial
// with ErrLeaseLost, not with the end of its waits that the loss caused.
func TestStoreLeaseLostWhileDialWaits(t *testing.T) {
	srv := newPeerServer(t)
	ls := newLosingStore(t)
	cfg := Config{Store: ls, NoCarbons: true, beforeWait: func(*Client) { close(ls.lost) }}
	atPeer(t, srv, &cfg)
	c, err := Dial(waitCtx(t), testJID, peerPassword, &cfg)
	if err == nil {
		c.Close()
		t.Fatal("Dial handed out a client whose lease was lost")
	}
	if !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Dial: %v, want ErrLeaseLost", err)
	}
	if n := closes(srv); n != 0 {
		t.Errorf("%d streams ended with </stream:stream>: the new owner could not resume it", n)
	}
}
