package xmpptrack

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestStoreAcksCoverFinished: with Config.Store, the client's <a h/> never
// covers a stanza whose OnMessage has not returned (a process killed then
// must get it again on resumption); once the store has the stanzas the
// application finished, an unsolicited <a/> tells the server, and the
// answer to its <r/> says the same.
func TestStoreAcksCoverFinished(t *testing.T) {
	srv := newPeerServer(t)
	release, blocked := make(chan struct{}), make(chan struct{})
	got := make(chan string, 4)
	c := dialPeer(t, srv, Config{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), NoReceipts: true, NoCarbons: true,
		OnMessage: func(_ *Client, m *Incoming) {
			if m.ID == "in2" {
				close(blocked)
				<-release
			}
			got <- m.ID
		}})
	pc := srv.next(t)
	pc.send(`<message from='bob@example.org/pc' type='chat' id='in1'><body>1</body></message>`)
	if id := <-got; id != "in1" {
		t.Fatalf("got %s", id)
	}
	pc.send(`<message from='bob@example.org/pc' type='chat' id='in2'><body>2</body></message>`)
	<-blocked
	n := c.sm.Info().Handled // in2 is the last stanza counted
	nextAck := func() uint32 {
		t.Helper()
		select {
		case h := <-srv.acks:
			if h >= n {
				t.Fatalf("<a h='%d'/> covers in2 (stanza %d), whose OnMessage has not returned", h, n)
			}
			return h
		case <-time.After(testWait):
			t.Fatalf("no <a/> covering in1 (stanza %d)", n-1)
			return 0
		}
	}
	pc.send(`<r xmlns='urn:xmpp:sm:3'/>`)
	for nextAck() != n-1 { // the answer, then the unsolicited ack once in1 is saved
	}
	pc.send(`<r xmlns='urn:xmpp:sm:3'/>`)
	if h := nextAck(); h != n-1 {
		t.Fatalf("<r/> answered with h=%d, want %d", h, n-1)
	}
	close(release)
	<-got
	for { // an ack of 1 may still be on its way: then the one of in2
		select {
		case h := <-srv.acks:
			if h == n {
				return
			}
			if h != n-1 {
				t.Fatalf("after in2 returned: <a h='%d'/>, want %d", h, n)
			}
		case <-time.After(testWait):
			t.Fatal("no unsolicited <a/> once in2 was finished and saved")
		}
	}
}

// TestStoreResumeClaimsFinished: with Config.Store, resuming the stream
// within the process claims only the stanzas the store saved as finished
// (a process killed right after must get the others again, and its
// successor, claiming the saved count, must not claim less), and the
// inbound count saved after the resumption does not cover a stanza read
// on the old connection whose OnMessage has not returned.
func TestStoreResumeClaimsFinished(t *testing.T) {
	srv := newPeerServer(t)
	release, blocked := make(chan struct{}), make(chan struct{})
	defer close(release)
	got := make(chan string, 4)
	st := openStorePath(t, filepath.Join(t.TempDir(), "track.db"))
	c := dialPeer(t, srv, Config{Store: st, NoReceipts: true, NoCarbons: true,
		OnMessage: func(_ *Client, m *Incoming) {
			if m.ID == "in2" {
				close(blocked)
				<-release
			}
			got <- m.ID
		}})
	pc := srv.next(t)
	pc.send(`<message from='bob@example.org/pc' type='chat' id='in1'><body>1</body></message>`)
	if id := <-got; id != "in1" {
		t.Fatalf("got %s", id)
	}
	pc.send(`<message from='bob@example.org/pc' type='chat' id='in2'><body>2</body></message>`)
	<-blocked
	// Once in1 is saved as finished, the client tells the server.
	for h := uint32(0); h != 1; {
		select {
		case h = <-srv.acks:
			if h > 1 {
				t.Fatalf("<a h='%d'/> covers in2, whose OnMessage has not returned", h)
			}
		case <-time.After(testWait):
			t.Fatal("no <a/> covering in1")
		}
	}
	pc.conn.Close() // in2 is still in OnMessage
	if pc = srv.next(t); !pc.resumed {
		t.Fatal("not resumed")
	}
	srv.mu.Lock()
	resumedAt := slices.Clone(srv.resumedAt)
	srv.mu.Unlock()
	if !slices.Equal(resumedAt, []uint32{1}) {
		t.Errorf("<resume h/>: %v, want [1] (in1 only: in2's OnMessage has not returned)", resumedAt)
	}
	c.Close() // saves the stream-management state a last time
	sess, err := st.Session(t.Context(), c.dur.owner)
	if err != nil {
		t.Fatal(err)
	}
	if sess.Inbound != 1 {
		t.Errorf("saved inbound count %d, want 1 (in2's OnMessage has not returned)", sess.Inbound)
	}
}

// TestStoreFinishedCountsAfterEnabled: a stanza handled before <enabled/>
// is not in the stream's inbound count (XEP-0198 counts from <enabled/>),
// so its callbacks' return must not count as finishing one of the counted
// stanzas: the acks, bounded by the count the store saved, never cover a
// stanza whose OnMessage has not returned.
func TestStoreFinishedCountsAfterEnabled(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.stall = "enable" })
	release, blocked := make(chan struct{}), make(chan struct{})
	defer close(release)
	got := make(chan string, 4)
	cfg := Config{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), NoReceipts: true, NoCarbons: true,
		OnMessage: func(_ *Client, m *Incoming) {
			if m.ID == "b" {
				close(blocked)
				<-release
			}
			got <- m.ID
		},
		Addr: srv.l.Addr().String(), DirectTLS: true, TLSConfig: &tls.Config{RootCAs: testRoots(t)},
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	type dialed struct {
		c   *Client
		err error
	}
	res := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), testWait)
		defer cancel()
		c, err := Dial(ctx, testJID, peerPassword, &cfg)
		res <- dialed{c, err}
	}()
	pc := srv.next(t)
	select {
	case <-srv.stalled: // <enable/> written, unanswered
	case <-time.After(testWait):
		t.Fatal("no <enable/>")
	}
	srv.set(func(srv *peerServer) { srv.stall, srv.smID, srv.inH = "", "sm-pre", 0 })
	pc.send(`<message from='bob@example.org/pc' type='chat' id='pre'><body>0</body></message>`)
	pc.send(`<enabled xmlns='urn:xmpp:sm:3' id='sm-pre' resume='true'/>`)
	d := <-res
	if d.err != nil {
		t.Fatalf("Dial: %v", d.err)
	}
	c := d.c
	t.Cleanup(func() { c.Close() })
	pc.send(`<message from='bob@example.org/pc' type='chat' id='a'><body>1</body></message>`)
	for _, want := range []string{"pre", "a"} {
		if id := <-got; id != want {
			t.Fatalf("got %s, want %s", id, want)
		}
	}
	pc.send(`<message from='bob@example.org/pc' type='chat' id='b'><body>2</body></message>`)
	<-blocked
	if n := c.sm.Info().Handled; n != 2 {
		t.Fatalf("inbound count %d, want 2 (a and b)", n)
	}
	pc.send(`<r xmlns='urn:xmpp:sm:3'/>`)
	for h := uint32(0); h != 1; { // the answer, then the ack once a is saved
		select {
		case h = <-srv.acks:
			if h > 1 {
				t.Fatalf("<a h='%d'/> covers b, whose OnMessage has not returned", h)
			}
		case <-time.After(testWait):
			t.Fatal("no <a/> covering a")
		}
	}
}

// TestStoreAckFollowsSession: the unsolicited <a/> that tells the server
// what the store saved as finished goes to the current session, not to the
// one of the save that started the ack's writer: a reconnection while the
// writer was on its way must not send the ack into the dead connection.
func TestStoreAckFollowsSession(t *testing.T) {
	srv := newPeerServer(t)
	got := make(chan string, 4)
	c := dialPeer(t, srv, Config{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), NoReceipts: true, NoCarbons: true,
		OnMessage: func(_ *Client, m *Incoming) { got <- m.ID }})
	entered, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() {
		once.Do(func() {
			close(entered)
			<-proceed
		})
	}
	c.dur.ackHook.Store(&hook)
	pc := srv.next(t)
	old, err := c.Session(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	pc.send(`<message from='bob@example.org/pc' type='chat' id='in1'><body>1</body></message>`)
	<-got
	select {
	case <-entered: // in1 saved as finished: the writer is on its way
	case <-time.After(testWait):
		close(proceed)
		t.Fatal("no ack writer once in1 was saved")
	}
	pc.conn.Close()
	if pc = srv.next(t); !pc.resumed {
		close(proceed)
		t.Fatal("not resumed")
	}
	if _, err := c.waitSession(waitCtx(t), old, false); err != nil {
		close(proceed)
		t.Fatal(err)
	}
	close(proceed)
	select {
	case h := <-srv.acks:
		if h != 1 {
			t.Errorf("<a h='%d'/>, want 1 (in1)", h)
		}
	case <-time.After(testWait):
		t.Fatal("no <a/> on the new connection: the writer wrote to the old one")
	}
}
