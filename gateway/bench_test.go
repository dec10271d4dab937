package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// BenchmarkPostMessage measures POST /v1/messages over loopback HTTP with an
// account that costs nothing: the HTTP layer's own ceiling (the client's
// cost included, as it runs in the same process). Besides the wall time per
// request it reports cpu-ns/op, the process's CPU time (user and system) per
// request: on a shared, loaded machine the wall time mostly measures the
// wait for a core, the CPU time what a request costs.
func BenchmarkPostMessage(b *testing.B) {
	f := newFixture(b, Config{})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}}
	body := `{"to":"bob@example.org","body":"benchmark message"}`
	b.SetParallelism(100)
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", f.srv.URL+"/v1/messages", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 202 {
				b.Fatal(resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// TestSendResponseJSON: the hand-written encoding of the POST answer is the
// one encoding/json writes.
func TestSendResponseJSON(t *testing.T) {
	yes := true
	for _, r := range []sendResponse{
		{ID: "abc-DEF_123", State: State(tracking.DeliveredToServer), Cursor: 18446744073709551615, Settled: true},
		{ID: `we"ird<&>\é` + "\x01", State: State(tracking.InTransit)},
		{ID: "x", State: State(tracking.SeenByRecipient), Cursor: 7, Reached: &yes},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); string(got) != string(want) {
			t.Errorf("appendJSON\n got %s\nwant %s", got, want)
		}
	}
}

// nopWriter is a ResponseWriter that keeps only the status.
type nopWriter struct {
	h      http.Header
	status int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(s int)           { w.status = s }

// BenchmarkPostHandler measures the gateway's own work for POST
// /v1/messages, without the network and with an account that costs
// nothing (the fake's tracker included): authentication, decoding,
// validation, the record, the answer. In memory the record is the
// gateway's; with SQLite the fake account records the message in the
// store, as a client does (its commits included). "own" is the gateway's
// own work alone: a store, but an account that costs nothing and records
// nothing, and one request used again (see nopPost).
func BenchmarkPostHandler(b *testing.B) {
	b.Run("own", func(b *testing.B) {
		post := nopPost(b, "bob@example.org")
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime()
		for b.Loop() {
			post()
		}
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("memory", func(b *testing.B) { benchmarkPostHandler(b, Config{}) })
	b.Run("sqlite", func(b *testing.B) {
		st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "gw.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		benchmarkPostHandler(b, Config{Store: st})
	})
}

func benchmarkPostHandler(b *testing.B, cfg Config) {
	f := newFixture(b, cfg)
	body := `{"to":"bob@example.org","body":"benchmark message"}`
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		req, _ := http.NewRequest("POST", "/v1/messages", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		w := &nopWriter{h: make(http.Header)}
		f.g.ServeHTTP(w, req)
		if w.status != 202 {
			b.Fatal(w.status)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkFilteredFeedPage measures one read of the in-memory feed whose
// channel filter matches nothing, from its oldest change, with the record
// full (Config.MaxEvents' default, a million changes): the time one call
// holds the record's lock, which every send and state change needs.
func BenchmarkFilteredFeedPage(b *testing.B) {
	m := newMemRecord(200_000, 1_000_000)
	ctx := context.Background()
	for i := range 200_000 {
		id := strconv.Itoa(i)
		m.create(ctx, Status{ID: id, To: "bob@example.org", State: State(tracking.InTransit)}, "", [32]byte{})
		for _, s := range []tracking.MessageState{tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.SeenByRecipient, tracking.Closed} {
			m.change(ctx, id, Change{State: State(s)})
		}
	}
	b.ResetTimer()
	for range b.N {
		if _, _, err := m.changes(ctx, 0, []string{"nomatch"}, defaultLimit); err != nil {
			b.Fatal(err)
		}
	}
}
