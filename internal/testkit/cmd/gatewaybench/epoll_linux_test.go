//go:build linux

package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestEpollClient: the epoll client sends every request with its headers
// and body on its keep-alive connections, one in flight on each and all of
// them at once, in several batches, and returns one latency per request.
func TestEpollClient(t *testing.T) {
	var reqs, conns atomic.Int64
	var inFlight, maxInFlight atomic.Int64
	// The first 8 requests wait for one another: the first batch passes
	// only if the client has all 8 in flight at once.
	var arrived atomic.Int64
	all := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); cur > m && !maxInFlight.CompareAndSwap(m, cur); m = maxInFlight.Load() {
		}
		b, _ := io.ReadAll(r.Body) // before waiting: then a closed connection ends the wait
		if arrived.Add(1) == 8 {
			close(all)
		}
		select {
		case <-all:
		case <-r.Context().Done():
			return
		}
		if r.Method != "POST" || r.URL.Path != "/v1/messages" || r.Header.Get("Authorization") != "Bearer "+token ||
			r.Header.Get("Content-Type") != "application/json" || string(b) != `{"x":1}` {
			t.Errorf("request %s %s %q %q", r.Method, r.URL, r.Header, b)
		}
		reqs.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"x"}`+"\n")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c, err := dialEpoll(addr, "/v1/messages", token, []byte(`{"x":1}`), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for _, n := range []int{8, 3, 50} {
		lats, err := c.postAll(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(lats) != n {
			t.Fatalf("%d latencies for %d requests", len(lats), n)
		}
		for _, l := range lats {
			if l <= 0 {
				t.Fatalf("latency %v", l)
			}
		}
	}
	if reqs.Load() != 61 || conns.Load() != 8 || maxInFlight.Load() != 8 {
		t.Errorf("%d requests on %d connections, %d at once", reqs.Load(), conns.Load(), maxInFlight.Load())
	}
}

// TestEpollClientStatus: an answer other than 202 fails the batch with the
// status and the body.
func TestEpollClientStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, "slow down")
	}))
	defer srv.Close()
	c, err := dialEpoll(strings.TrimPrefix(srv.URL, "http://"), "/v1/messages", token, []byte(`{}`), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.postAll(4); err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "slow down") {
		t.Fatalf("err %v", err)
	}
}

func TestParseResponse(t *testing.T) {
	full := "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\ncontent-length: 5\r\n\r\nhello"
	for _, c := range []struct {
		in           string
		status, size int
		ok, wantErr  bool
	}{
		{in: full, status: 202, size: len(full), ok: true},
		{in: full[:len(full)-1], status: 202, size: len(full)},
		{in: full[:20]},
		{in: "HTTP/1.1 202 Accepted\r\n\r\n", wantErr: true},
		{in: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", wantErr: true},
		{in: "HTTP/1.1 2x2 Accepted\r\nContent-Length: 0\r\n\r\n", wantErr: true},
		{in: "HTTP/1.1 404 Not Found\r\nContent-Length: x\r\n\r\n", wantErr: true},
	} {
		status, size, ok, err := parseResponse([]byte(c.in))
		if (err != nil) != c.wantErr || !c.wantErr && (status != c.status || size != c.size || ok != c.ok) {
			t.Errorf("%q: status %d size %d ok %v err %v", c.in, status, size, ok, err)
		}
	}
}
