package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const testToken = "s3cret-token-for-tests"

// fakeSender stands for an account: its trackers are driven by the test
// through Advance.
type fakeSender struct {
	g *Gateway

	mu       sync.Mutex
	sent     []xmpptrack.Message
	payloads []string
	trackers map[string]*tracking.MessageTracker
	sentCh   chan string
	err      error
	readyErr error
	seen     []string
	// mute stops forwarding state changes to the gateway (a record that
	// lags behind its trackers).
	mute bool
	// plainStore records in Config.Store rather than ClientStore.
	plainStore bool
	// hold, if set, is received from after the first message is recorded
	// in the store and before it is tracked; held is closed then.
	hold, held chan struct{}
	// beforeCommit, if set, is called (unlocked) before a message is
	// recorded in the store; an error fails the send before tracking.
	beforeCommit func() error
	// afterCommit, if set, is called (unlocked) after a message is
	// recorded in the store and before it is tracked; an error fails the
	// send then, with the message recorded and untracked.
	afterCommit func(id string) error
	// beforeSend, if set, is called (unlocked) at the start of each send.
	beforeSend func()
	// handed counts the state changes whose Gateway.OnStateChange
	// returned; handedCh is closed (and replaced) at each.
	handed   int
	handedCh chan struct{}
}

// waitHanded waits until the gateway's OnStateChange returned for n state
// changes in all: the trackers' callbacks run on a goroutine of their own,
// so a change the record shows may not have reached the metrics yet.
func (f *fakeSender) waitHanded(t testing.TB, n int) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		f.mu.Lock()
		got := f.handed
		if f.handedCh == nil {
			f.handedCh = make(chan struct{})
		}
		ch := f.handedCh
		f.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("%d state changes handed to the gateway, want %d", got, n)
		}
	}
}

func (f *fakeSender) send(_ context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
	if f.beforeSend != nil {
		f.beforeSend()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var payload string
	if m.Payload != nil {
		toks, err := xmlstream.ReadAll(m.Payload)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		enc := xml.NewEncoder(&b)
		for _, t := range toks {
			enc.EncodeToken(t)
		}
		enc.Flush()
		payload = b.String()
		m.Payload = nil
	}
	// With a store, record as xmpptrack.Client does with Config.Store:
	// write-ahead, then every change; through ClientStore unless
	// plainStore.
	st := f.g.ClientStore()
	if f.plainStore {
		st = f.g.cfg.Store
	}
	if h := f.beforeCommit; h != nil && st != nil {
		f.mu.Unlock()
		err := h()
		f.mu.Lock()
		if err != nil {
			return nil, err
		}
	}
	if st != nil {
		err := st.Commit(context.Background(), &store.Batch{Messages: []store.Message{{ID: m.ID,
			Owner: store.Instance{Account: "alice@example.org", Resource: "fake"}, To: m.To.String(),
			Room: m.Type == "groupchat", Thread: m.Thread, Channel: m.Channel, Raw: []byte("<message/>")}}})
		switch {
		case errors.Is(err, store.ErrExists):
			return nil, fmt.Errorf("fake: %w", tracking.ErrDuplicateID)
		case err != nil:
			return nil, fmt.Errorf("%w: %w", xmpptrack.ErrNotRecorded, err)
		}
		if h := f.afterCommit; h != nil {
			f.mu.Unlock()
			err := h(m.ID)
			f.mu.Lock()
			if err != nil {
				return nil, err
			}
		}
		if h := f.hold; h != nil {
			f.hold = nil
			close(f.held)
			f.mu.Unlock()
			<-h
			f.mu.Lock()
		}
	}
	t := tracking.NewMessageTracker(m.ID)
	mute := f.mute
	t.OnStateChange(func(from, to tracking.MessageState, resp *tracking.Response) {
		if mute {
			return
		}
		if st != nil {
			c := store.Change{ID: t.ID(), State: to}
			if resp != nil {
				c.From = resp.From.String()
				if resp.Err != nil {
					c.Condition, c.Text = "undefined-condition", resp.Err.Error()
				}
			}
			st.Commit(context.Background(), &store.Batch{Changes: []store.Change{c}})
		}
		f.g.OnStateChange(t, from, to, resp)
		f.mu.Lock()
		f.handed++
		if f.handedCh != nil {
			close(f.handedCh)
		}
		f.handedCh = make(chan struct{})
		f.mu.Unlock()
	})
	f.sent = append(f.sent, m)
	f.payloads = append(f.payloads, payload)
	f.trackers[m.ID] = t
	if f.sentCh != nil {
		f.sentCh <- m.ID
	}
	return t, nil
}

func (f *fakeSender) seenBy(*tracking.MessageTracker) []string { return f.seen }
func (f *fakeSender) ready(context.Context) error              { return f.readyErr }
func (f *fakeSender) health() health                           { return health{connected: f.readyErr == nil} }

func (f *fakeSender) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

func (f *fakeSender) tracker(id string) *tracking.MessageTracker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.trackers[id]
}

type fixture struct {
	t    testing.TB
	g    *Gateway
	fake *fakeSender
	srv  *httptest.Server
}

// newFixture starts a gateway with one fake account, alice@example.org,
// behind a real HTTP server.
func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	if cfg.Tokens == nil {
		cfg.Tokens = []string{testToken, "other-token"}
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = -1
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSender{g: g, trackers: make(map[string]*tracking.MessageTracker)}
	if err := g.addSender("alice@example.org", f); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.Close()
		g.Close()
	})
	return &fixture{t: t, g: g, fake: f, srv: srv}
}

// do sends a request with the test token and returns the status and body.
func (f *fixture) do(method, path, body string, hdr ...string) (int, http.Header, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// send posts a message and returns the response.
func (f *fixture) send(body string, hdr ...string) sendResponse {
	f.t.Helper()
	code, _, b := f.do("POST", "/v1/messages", body, hdr...)
	if code != http.StatusAccepted && code != http.StatusOK {
		f.t.Fatalf("POST /v1/messages = %d %s", code, b)
	}
	var r sendResponse
	mustJSON(f.t, b, &r)
	return r
}

func (f *fixture) status(id string) Status {
	f.t.Helper()
	code, _, b := f.do("GET", "/v1/messages/"+id, "")
	if code != 200 {
		f.t.Fatalf("GET status = %d %s", code, b)
	}
	var st Status
	mustJSON(f.t, b, &st)
	return st
}

// waitState waits (through the long poll) until the message's record shows
// state.
func (f *fixture) waitState(id string, state tracking.MessageState) Status {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		h, _ := f.g.rec.head(ctx)
		st := f.status(id)
		if tracking.MessageState(st.State) == state {
			return st
		}
		if err := f.g.rec.wait(ctx, h); err != nil {
			f.t.Fatalf("message %s never reached %s (is %s)", id, state, st.State)
		}
	}
}

func mustJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

func problemOf(t *testing.T, h http.Header, b []byte) problem {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (body %s)", ct, b)
	}
	var p problem
	mustJSON(t, b, &p)
	return p
}

var errTest = errors.New("test failure")

// records runs a test with the in-memory record and with a SQLite store.
func records(t *testing.T, f func(t *testing.T, rc Config)) {
	t.Run("memory", func(t *testing.T) { f(t, Config{}) })
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, Config{Store: st})
	})
}

// with returns cfg on the record of rc.
func with(rc, cfg Config) Config {
	cfg.Store = rc.Store
	return cfg
}
