package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// nopSender is an account that costs nothing: every send gets one shared
// tracker and, as from a client recording through ClientStore, a cursor.
type nopSender struct {
	g *Gateway
	t *tracking.MessageTracker
}

func (s *nopSender) send(_ context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
	s.g.mu.Lock()
	if lm := s.g.live[m.ID]; lm != nil {
		lm.cursor = 1
	}
	s.g.mu.Unlock()
	return s.t, nil
}
func (s *nopSender) seenBy(*tracking.MessageTracker) []string { return nil }
func (s *nopSender) ready(context.Context) error              { return nil }
func (s *nopSender) health() health                           { return health{connected: true} }

// rewindBody is a request body read again for each request.
type rewindBody struct{ strings.Reader }

func (*rewindBody) Close() error { return nil }

// TestPostAllocations: the gateway's own allocations for a plain POST
// /v1/messages with a store (net/http's and the account client's aside)
// are only those that keep something: the decoded fields, the recipient's
// JID (jid.Parse), the message id and the live tracker entry; 9, 10 for a
// recipient with a resource. There used to be 5 more, and another for a
// token longer than 32 bytes: the recipient's normalized form built again
// (2), the record's status and history (2), a reader limiting the body
// (1) and the token's bytes to hash.
func TestPostAllocations(t *testing.T) {
	for to, most := range map[string]float64{"bob@example.org": 9, "bob@example.org/phone": 10, "example.org": 9} {
		post := nopPost(t, to)
		// The least of three runs: the gateway's own goroutines (the job
		// scheduler polling the store) may allocate meanwhile.
		n := testing.AllocsPerRun(100, post)
		for range 2 {
			n = min(n, testing.AllocsPerRun(100, post))
		}
		// The answer's headers cost nothing here (the nopWriter's map,
		// cleared for each request, keeps its room); in net/http they
		// cost its header map and the copy WriteHeader takes of it.
		if raceEnabled {
			most += 4 // the body's and the answer's pooled buffers, each time
		}
		if n > most {
			t.Errorf("to %s: %v allocations per POST, want at most %v", to, n, most)
		}
	}
}

// TestCheckNamesAllocations: checking a valid body's member names and
// escapes (checkNames, before encoding/json decodes what decodeFast did
// not) allocates nothing, so that a body of POST /v1/notify, /v1/test, or
// of POST /v1/messages with window, send_at or wait_timeout costs what
// encoding/json's decoding costs; it used to cost ~60 allocations more
// (the body validated, then walked with a json.Decoder's tokens, the
// member names listed again by reflection for every request).
func TestCheckNamesAllocations(t *testing.T) {
	for _, c := range []struct {
		body string
		v    any
	}{
		{`{"to":"bob@example.org","body":"hi","wait":"server","wait_timeout":"5s"}`, new(sendRequest)},
		{`{"to":"bob@example.org","body":"h\u00e9 \ud83d\ude00 \"x\"","window":"10m","send_at":"2030-01-02T15:04:05Z"}`, new(sendRequest)},
		{` {"to":"bob@example.org","title":"disk full","body":"on host a","priority":2} `, new(notifyRequest)},
		{`{"to":"bob@example.org","timeout":"5s","from":"alice@example.org"}`, new(testRequest)},
	} {
		data := []byte(c.body)
		if p := checkNames(data, c.v); p != nil {
			t.Fatalf("%s: %s", c.body, p.Detail)
		}
		if n := testing.AllocsPerRun(100, func() { checkNames(data, c.v) }); n != 0 {
			t.Errorf("%s: checkNames allocates %v times, want 0", c.body, n)
		}
	}
}

// nopPost returns a function that serves a plain POST /v1/messages to
// `to`, answered 202, with a 43-byte token, through a gateway with a store
// (SQLite, which a plain POST does not touch) and an account that costs
// nothing (nopSender), from one request and one writer used again: what
// it costs is the gateway's own (net/http's and the client's aside).
func nopPost(tb testing.TB, to string) func() {
	tb.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "gw.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	const token = "a-token-of-43-bytes-as-base64-of-32-bytes-x"
	g, err := New(Config{Tokens: []string{token}, RateLimit: -1, Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.Close() })
	if err := g.addSender("alice@example.org", &nopSender{g: g, t: tracking.NewMessageTracker("x")}); err != nil {
		tb.Fatal(err)
	}
	body := `{"to":"` + to + `","body":"hello"}`
	req := httptest.NewRequest("POST", "/v1/messages", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(body))
	rb := new(rewindBody)
	w := &nopWriter{h: make(http.Header)}
	post := func() {
		rb.Reset(body)
		req.Body = rb
		clear(w.h)
		g.ServeHTTP(w, req)
		if w.status != http.StatusAccepted {
			tb.Fatalf("status %d", w.status)
		}
		g.mu.Lock()
		clear(g.live) // keeps its room: no growth counted
		g.mu.Unlock()
	}
	post()
	return post
}

// TestJIDString: jidString is the normalized form of what it parsed,
// whether or not that was normalized already.
func TestJIDString(t *testing.T) {
	for _, s := range []string{
		"bob@example.org", "Bob@Example.org", "bob@EXAMPLE.org", "example.org",
		"Example.org", "bob@example.org/Phone", "Bob@example.org/Phone",
		"bob@example.org/a/b", "bob@example.org/a@b", "bob@[::1]", "bob@127.0.0.1",
		"bob@example.org.", "ǅ@example.org", "ß@example.org", "bob@éxample.org",
		"bob@xn--xample-9ua.org", "x@" + strings.Repeat("d", 40) + ".org/" + strings.Repeat("r", 40),
		strings.Repeat("l", 40) + "@example.org",
	} {
		j, err := jid.Parse(s)
		if err != nil {
			t.Logf("%q: %v", s, err)
			continue
		}
		if got, want := jidString(s, j), j.String(); got != want {
			t.Errorf("jidString(%q) = %q, want %q", s, got, want)
		}
	}
}

// TestReadLimited: a body is read whole up to the limit, and one byte past
// it is told apart, however the reader splits it; a request whose body
// runs past its Content-Length (a server that is not net/http's) is still
// refused past the limit.
func TestReadLimited(t *testing.T) {
	const limit = 1000
	for _, n := range []int{0, 1, 511, 512, 513, limit - 1, limit, limit + 1, 3 * limit} {
		for _, chunk := range []int{1, 7, 512, 4096} {
			buf := new(bytes.Buffer)
			body := strings.Repeat("x", n)
			tooLarge, err := readLimited(buf, iotest.HalfReader(&chunkReader{s: body, n: chunk}), limit)
			if err != nil {
				t.Fatal(err)
			}
			if tooLarge != (n > limit) || (!tooLarge && buf.String() != body) || buf.Len() > limit+1 {
				t.Errorf("%d bytes in chunks of %d: too large %v, read %d", n, chunk, tooLarge, buf.Len())
			}
		}
	}
	f := newFixture(t, Config{MaxBody: limit})
	req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(`{"to":"bob@example.org","body":"`+strings.Repeat("x", 2*limit)+`"}`))
	req.ContentLength = 40
	req.Header.Set("Authorization", "Bearer "+testToken)
	w := httptest.NewRecorder()
	f.g.ServeHTTP(w, req)
	if p := problemOf(t, w.Header(), w.Body.Bytes()); w.Code != http.StatusRequestEntityTooLarge || p.Type != ProblemTypePrefix+"body-too-large" || f.fake.count() != 0 {
		t.Errorf("%d %s, %d sent", w.Code, w.Body, f.fake.count())
	}
}

// chunkReader returns s at most n bytes at a time.
type chunkReader struct {
	s string
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.s)
	r.s = r.s[k:]
	return k, nil
}
