package xmpptrack

import (
	"errors"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestReconnectTemporaryAuthFailure: while the server cannot check
// credentials for a moment (temporary-auth-failure on two logins), the
// client keeps reconnecting with backoff; it then resumes the stream and the
// message the server had not acknowledged is not lost.
func TestReconnectTemporaryAuthFailure(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	tr, err := c.Send(waitCtx(t), Message{To: jid.MustParse("bob@localhost"), ID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) {
		srv.noAcks = false
		srv.authFail = []string{"temporary-auth-failure", "temporary-auth-failure"}
	})
	pc.conn.Close()
	if pc := srv.next(t); !pc.resumed {
		t.Error("the stream was not resumed")
	}
	waitState(t, tr, tracking.DeliveredToServer)
	if err := c.Err(); err != nil {
		t.Errorf("Err() = %v", err)
	}
	srv.mu.Lock()
	left := len(srv.authFail)
	srv.mu.Unlock()
	if left != 0 {
		t.Errorf("%d temporary failures left unused", left)
	}
}

// TestReconnectAuthFailure: refused credentials stop the client, and the
// message the server had not acknowledged becomes Aborted.
func TestReconnectAuthFailure(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	tr, err := c.Send(waitCtx(t), Message{To: jid.MustParse("bob@localhost"), ID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.authFail = []string{"not-authorized"} })
	pc.conn.Close()
	select {
	case <-c.Done():
	case <-time.After(testWait):
		t.Fatal("the client did not stop")
	}
	var ae *AuthError
	if err := c.Err(); !errors.Is(err, ErrAuth) || !errors.As(err, &ae) || ae.Condition != "not-authorized" || ae.Temporary() {
		t.Errorf("Err() = %v, want a permanent *AuthError with not-authorized", err)
	}
	waitState(t, tr, tracking.Aborted)
}
