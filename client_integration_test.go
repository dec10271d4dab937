package xmpptrack

import (
	"context"
	"encoding/xml"
	"errors"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// dialTest logs in to a harness account over STARTTLS, verifying the
// harness certificate (or in plaintext when cfg.AllowPlaintext is set).
func dialTest(t *testing.T, srv *testserver.Server, local string, cfg Config) *Client {
	t.Helper()
	cfg.Addr = srv.Addr()
	if !cfg.AllowPlaintext {
		cfg.TLSConfig = srv.TLSConfig()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, srv.JID(local), srv.Password(local), &cfg)
	if err != nil {
		t.Fatalf("Dial %s: %v\n%s", local, err, srv.Logs())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// states records the state changes of every tracker of a client.
type stateLog struct {
	mu  sync.Mutex
	log map[string][]tracking.MessageState
}

func (l *stateLog) hook(t *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.log == nil {
		l.log = map[string][]tracking.MessageState{}
	}
	l.log[t.ID()] = append(l.log[t.ID()], to)
}

func (l *stateLog) of(id string) []tracking.MessageState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tracking.MessageState(nil), l.log[id]...)
}

// markingHandler marks every incoming chat message displayed.
func markingHandler(c **Client) xmpp.Handler {
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local == "message" {
			for _, a := range start.Attr {
				if a.Name.Local == "from" {
					if from, err := jid.Parse(a.Value); err == nil && *c != nil {
						(*c).MarkDisplayed(from)
					}
				}
			}
		}
		return nil
	})
}

func forEachServer(t *testing.T, accounts []string, f func(t *testing.T, srv *testserver.Server)) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, kind, testserver.Options{Accounts: accounts})
			f(t, srv)
		})
	}
}

func TestIntegrationTrackedMessage(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		var bob *Client
		bob = dialTest(t, srv, "bob", Config{Handler: markingHandler(&bob)})
		var log stateLog
		alice := dialTest(t, srv, "alice", Config{OnStateChange: log.hook})

		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		tr, err := alice.Send(ctx, Message{To: srv.JID("bob"), Body: "hello bob"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := tr.Wait(ctx, tracking.SeenByRecipient)
		if err != nil || st != tracking.SeenByRecipient {
			t.Fatalf("Wait: %v, %v\n%s", st, err, srv.Logs())
		}
		<-tr.Done()
		// Acks, receipts and markers may overtake each other on the wire, but
		// the states only move forward and end in SEEN_BY_RECIPIENT.
		got := waitLog(ctx, &log, tr.ID(), tracking.SeenByRecipient)
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Fatalf("states went backwards: %v", got)
			}
		}
	})
}

// waitLog waits until the callbacks recorded the final state.
func waitLog(ctx context.Context, l *stateLog, id string, last tracking.MessageState) []tracking.MessageState {
	for {
		got := l.of(id)
		if len(got) > 0 && got[len(got)-1] == last || ctx.Err() != nil {
			return got
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestIntegrationNonexistentRecipient(t *testing.T) {
	forEachServer(t, []string{"alice"}, func(t *testing.T, srv *testserver.Server) {
		alice := dialTest(t, srv, "alice", Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		tr, err := alice.Send(ctx, Message{To: jid.MustParse("nobody@" + srv.Domain()), Body: "anyone?"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := tr.Wait(ctx, tracking.DeliveredToRecipient)
		if st != tracking.Error || !errors.Is(err, tracking.ErrFailed) {
			t.Fatalf("Wait: %v, %v", st, err)
		}
		if !errors.Is(err, stanza.ErrNotAvailable) {
			t.Fatalf("error %v does not match stanza.ErrNotAvailable", err)
		}
		var de *stanza.DeliveryError
		if !errors.As(tr.Response().Err, &de) || de.Stanza.Condition != "service-unavailable" {
			t.Fatalf("response error %#v", tr.Response().Err)
		}
	})
}

func TestIntegrationOfflineRecipientTimesOut(t *testing.T) {
	forEachServer(t, []string{"alice", "carol"}, func(t *testing.T, srv *testserver.Server) {
		alice := dialTest(t, srv, "alice", Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		tr, err := alice.Send(ctx, Message{To: srv.JID("carol"), Body: "for later", Window: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := tr.Wait(ctx, tracking.DeliveredToServer); err != nil {
			t.Fatalf("Wait for the server ack: %v, %v", st, err)
		}
		st, err := tr.Wait(ctx, tracking.DeliveredToRecipient)
		if st != tracking.TimedOut || !errors.Is(err, tracking.ErrTimedOut) {
			t.Fatalf("Wait: %v, %v", st, err)
		}
	})
}
