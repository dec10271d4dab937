package xmpptrack_test

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// peer is a logged-in account on the other side: it answers receipt
// requests (the client does that), marks messages displayed when mark is set,
// and answers "ping" with "pong".
type peer struct {
	c    atomic.Pointer[xmpptrack.Client]
	mark bool
	// ctx bounds the peer's writes. It ends only after the peer closed:
	// mellium v0.23.0 may apply a context's end to the connection's write
	// deadline just after a write returned, which breaks the next write.
	ctx context.Context
}

func (p *peer) handler() xmpp.Handler {
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "message" {
			return nil
		}
		ev, err := stanza.ParseMessage(*start, t)
		c := p.c.Load()
		if err != nil || ev.Body == "" || c == nil || ev.Type == xstanza.GroupChatMessage {
			return nil
		}
		if ev.Body == "ping" {
			// The handler must not send: reply from another goroutine, then
			// mark, so that the reply arrives before the marker.
			go func() {
				c.Send(p.ctx, xmpptrack.Message{To: ev.From, Body: "pong"})
				if p.mark {
					c.MarkDisplayed(ev.From)
				}
			}()
			return nil
		}
		if p.mark {
			c.MarkDisplayed(ev.From)
		}
		return nil
	})
}

func startPeer(t *testing.T, srv *testserver.Server, local string, mark bool) *xmpptrack.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	p := &peer{mark: mark, ctx: ctx}
	c, err := xmpptrack.Dial(ctx, srv.JID(local), srv.Password(local), &xmpptrack.Config{
		Addr: srv.Addr(), TLSConfig: srv.TLSConfig(), Handler: p.handler(),
	})
	if err != nil {
		cancel()
		t.Fatalf("Dial %s: %v", local, err)
	}
	p.c.Store(c)
	t.Cleanup(func() {
		c.Close()
		cancel()
	})
	return c
}

func onceOptions(srv *testserver.Server, until tracking.MessageState) *xmpptrack.OnceOptions {
	return &xmpptrack.OnceOptions{
		Config: xmpptrack.Config{Addr: srv.Addr(), TLSConfig: srv.TLSConfig()},
		Until:  until,
	}
}

func TestSendOnce(t *testing.T) {
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"alice", "bob", "carol", "dave"}})
	startPeer(t, srv, "bob", true)   // answers receipts and marks displayed
	startPeer(t, srv, "dave", false) // answers receipts only
	alice, password := srv.JID("alice"), srv.Password("alice")

	// The subtests run one after the other: bob marks the newest message
	// from alice's bare JID, which must be the one the subtest waits for.
	reached := []struct {
		until, want tracking.MessageState
	}{
		{0, tracking.DeliveredToRecipient},
		{tracking.DeliveredToServer, tracking.DeliveredToServer},
		{tracking.DeliveredToRecipient, tracking.DeliveredToRecipient},
		{tracking.SeenByRecipient, tracking.SeenByRecipient},
	}
	for _, tc := range reached {
		name := "until=" + tc.until.String()
		if tc.until == 0 {
			name = "until=default"
		}
		t.Run(name, func(t *testing.T) {
			m := xmpptrack.Message{ID: "once-" + xmpptrack.NewID(), To: srv.JID("bob"), Body: "hello"}
			id, st, err := xmpptrack.SendOnce(t.Context(), alice, password, m, onceOptions(srv, tc.until))
			if err != nil || id != m.ID {
				t.Fatalf("SendOnce = %q, %v, %v", id, st, err)
			}
			// Acks, receipts and markers overtake each other: the state is
			// at or past the target, never below.
			if st < tc.want || st > tracking.SeenByRecipient {
				t.Fatalf("state %v, want at least %v", st, tc.want)
			}
		})
	}

	t.Run("nonexistent", func(t *testing.T) {
		m := xmpptrack.Message{To: jid.MustParse("nobody@" + srv.Domain()), Body: "anyone?"}
		id, st, err := xmpptrack.SendOnce(t.Context(), alice, password, m, onceOptions(srv, 0))
		if id == "" || st != tracking.Error {
			t.Fatalf("SendOnce = %q, %v, %v", id, st, err)
		}
		if !errors.Is(err, stanza.ErrNotAvailable) || !errors.Is(err, tracking.ErrFailed) {
			t.Fatalf("error %v: want stanza.ErrNotAvailable and tracking.ErrFailed", err)
		}
		var de *stanza.DeliveryError
		if !errors.As(err, &de) || de.Stanza.Condition != xstanza.ServiceUnavailable {
			t.Fatalf("error %v: no service-unavailable DeliveryError", err)
		}
	})

	t.Run("offline", func(t *testing.T) {
		m := xmpptrack.Message{To: srv.JID("carol"), Body: "for later", Window: time.Second}
		_, st, err := xmpptrack.SendOnce(t.Context(), alice, password, m, onceOptions(srv, 0))
		if st != tracking.TimedOut || !errors.Is(err, tracking.ErrTimedOut) || errors.Is(err, stanza.ErrDisconnected) {
			t.Fatalf("SendOnce = %v, %v; want TIMED_OUT, tracking.ErrTimedOut", st, err)
		}
	})

	t.Run("context", func(t *testing.T) {
		// dave never marks: waiting for SEEN_BY_RECIPIENT ends with ctx,
		// canceled as soon as the receipt has arrived.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		opts := onceOptions(srv, tracking.SeenByRecipient)
		opts.Config.OnStateChange = func(_ *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
			if to == tracking.DeliveredToRecipient {
				cancel()
			}
		}
		m := xmpptrack.Message{To: srv.JID("dave"), Body: "read me"}
		_, st, err := xmpptrack.SendOnce(ctx, alice, password, m, opts)
		if st != tracking.DeliveredToRecipient || !errors.Is(err, context.Canceled) {
			t.Fatalf("SendOnce = %v, %v; want DELIVERED_TO_RECIPIENT, context.Canceled", st, err)
		}
	})

	t.Run("replies", func(t *testing.T) {
		var mu sync.Mutex
		var got []string
		opts := onceOptions(srv, tracking.SeenByRecipient)
		opts.Config.OnMessage = func(_ *xmpptrack.Client, m *xmpptrack.Incoming) {
			// Still running when the marker ends SendOnce's wait (bob
			// marks right after the reply): SendOnce hands it the reply
			// all the same before it closes. Not a wait for an event.
			time.Sleep(300 * time.Millisecond)
			mu.Lock()
			got = append(got, m.From.Bare().String()+": "+m.Body)
			mu.Unlock()
		}
		m := xmpptrack.Message{To: srv.JID("bob"), Body: "ping"}
		_, st, err := xmpptrack.SendOnce(t.Context(), alice, password, m, opts)
		if err != nil || st != tracking.SeenByRecipient {
			t.Fatalf("SendOnce = %v, %v", st, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 || got[0] != "bob@localhost: pong" {
			t.Fatalf("Config.OnMessage got %q", got)
		}
	})

	t.Run("auth", func(t *testing.T) {
		m := xmpptrack.Message{To: srv.JID("bob"), Body: "x"}
		id, st, err := xmpptrack.SendOnce(t.Context(), alice, "wrong", m, onceOptions(srv, 0))
		if id == "" || st != tracking.Aborted || !errors.Is(err, xmpptrack.ErrAuth) {
			t.Fatalf("SendOnce = %q, %v, %v; want an id, ABORTED, ErrAuth", id, st, err)
		}
	})

	t.Run("closed client", func(t *testing.T) {
		c := startPeer(t, srv, "alice", false)
		c.Close()
		_, st, err := c.SendAndWait(t.Context(), xmpptrack.Message{To: srv.JID("bob"), Body: "x"}, tracking.DeliveredToServer)
		if st != tracking.Aborted || !errors.Is(err, stanza.ErrDisconnected) || !errors.Is(err, xmpptrack.ErrClientClosed) {
			t.Fatalf("SendAndWait = %v, %v; want ABORTED, ErrDisconnected and ErrClientClosed", st, err)
		}
	})

	t.Run("reuse", func(t *testing.T) {
		c := startPeer(t, srv, "alice", false)
		for range 2 {
			_, st, err := c.SendAndWait(t.Context(), xmpptrack.Message{To: srv.JID("dave"), Body: "x"}, tracking.DeliveredToRecipient)
			if err != nil || st < tracking.DeliveredToRecipient {
				t.Fatalf("SendAndWait = %v, %v", st, err)
			}
		}
	})
}

// A connection that is down when the window ends makes the timeout a
// disconnection too.
func TestSendOnceDisconnected(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"alice", "carol"}})
	opts := onceOptions(srv, tracking.DeliveredToRecipient)
	var once sync.Once
	opts.Config.OnStateChange = func(_ *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
		if to == tracking.DeliveredToServer {
			once.Do(func() { go srv.Stop() })
		}
	}
	m := xmpptrack.Message{To: srv.JID("carol"), Body: "lost", Window: 2 * time.Second}
	_, st, err := xmpptrack.SendOnce(t.Context(), srv.JID("alice"), srv.Password("alice"), m, opts)
	if st != tracking.TimedOut || !errors.Is(err, tracking.ErrTimedOut) || !errors.Is(err, stanza.ErrDisconnected) {
		t.Fatalf("SendOnce = %v, %v; want TIMED_OUT, ErrTimedOut and ErrDisconnected", st, err)
	}
}

// Errors that need no server: bad arguments and an unreachable address.
func TestSendOnceNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	untrusted := tlsListener(t)

	alice := jid.MustParse("alice@localhost")
	bob := jid.MustParse("bob@localhost")
	cfg := xmpptrack.Config{Addr: closed, AllowPlaintext: true}
	tests := []struct {
		name  string
		m     xmpptrack.Message
		until tracking.MessageState
		cfg   xmpptrack.Config
		want  error
		cause any // a pointer to a type the error must unwrap to, or nil
	}{
		{"unreachable", xmpptrack.Message{To: bob}, 0, cfg, xmpptrack.ErrConnect, new(*net.OpError)},
		{"untrusted certificate", xmpptrack.Message{To: bob}, 0, xmpptrack.Config{Addr: untrusted, DirectTLS: true}, xmpptrack.ErrConnect, new(*tls.CertificateVerificationError)},
		{"no recipient", xmpptrack.Message{}, 0, cfg, stanza.ErrInvalidHandle, nil},
		{"bad target", xmpptrack.Message{To: bob}, tracking.Aborted, cfg, tracking.ErrInvalidTarget, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			id, st, err := xmpptrack.SendOnce(ctx, alice, "secret", tc.m, &xmpptrack.OnceOptions{Config: tc.cfg, Until: tc.until})
			if id == "" || st != tracking.Aborted || !errors.Is(err, tc.want) {
				t.Fatalf("SendOnce = %q, %v, %v; want an id, ABORTED, %v", id, st, err, tc.want)
			}
			if tc.cause != nil && !errors.As(err, tc.cause) {
				t.Fatalf("error %v does not unwrap to %T", err, tc.cause)
			}
			if errors.Is(err, stanza.ErrNetwork) {
				t.Errorf("error %v matches stanza.ErrNetwork, which is about the recipient's side", err)
			}
		})
	}

	t.Run("config", func(t *testing.T) {
		// A contradictory configuration is reported as it is, not as a
		// network failure.
		bad := xmpptrack.Config{Addr: closed, AllowPlaintext: true, DirectTLS: true}
		_, _, err := xmpptrack.SendOnce(t.Context(), alice, "secret", xmpptrack.Message{To: bob}, &xmpptrack.OnceOptions{Config: bad})
		if err == nil || errors.Is(err, xmpptrack.ErrConnect) {
			t.Fatalf("SendOnce = %v; want a configuration error", err)
		}
	})
}

// tlsListener returns the address of a TLS server whose certificate no
// client trusts.
func tlsListener(t *testing.T) string {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{NextProtos: []string{"xmpp-client"}} // XEP-0368's ALPN
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
