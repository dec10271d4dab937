//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	c, err := dialEpoll(addr, "/v1/messages", token, []byte(`{"x":1}`), 8, 1)
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
	c, err := dialEpoll(strings.TrimPrefix(srv.URL, "http://"), "/v1/messages", token, []byte(`{}`), 2, 1)
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

// TestEpollClientPipelined: with a depth of 4, 8 requests in flight go on
// 2 connections, 4 at a time on each: the peer answers only once it holds
// 4 unanswered requests on a connection (a client that waited for each
// answer before the next request would get none), all 4 answers in one
// write, the last one split across two.
func TestEpollClientPipelined(t *testing.T) {
	const depth = 4
	body := []byte(`{"x":1}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	req := "POST /v1/messages HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n" + string(body)
	answer := "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":\"x\"}\n"
	var conns, reqs atomic.Int64
	errc := make(chan error, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				var got []byte
				buf := make([]byte, 4096)
				for {
					m, err := c.Read(buf)
					if err != nil {
						return
					}
					got = append(got, buf[:m]...)
					for len(got) >= depth*len(req) {
						if string(got[:depth*len(req)]) != strings.Repeat(req, depth) {
							errc <- fmt.Errorf("requests %q", got)
							return
						}
						got = got[depth*len(req):]
						reqs.Add(depth)
						all := strings.Repeat(answer, depth)
						cut := len(all) - 10
						if _, err := io.WriteString(c, all[:cut]); err != nil {
							return
						}
						if _, err := io.WriteString(c, all[cut:]); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	c, err := dialEpoll(addr, "/v1/messages", token, body, 2*depth, depth)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for _, n := range []int{8, 48} {
		lats, err := c.postAll(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(lats) != n {
			t.Fatalf("%d latencies for %d requests", len(lats), n)
		}
	}
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	if reqs.Load() != 56 || conns.Load() != 2 {
		t.Errorf("%d requests on %d connections", reqs.Load(), conns.Load())
	}
	if _, err := dialEpoll(addr, "/v1/messages", token, body, 6, depth); err == nil {
		t.Error("6 requests in flight on connections of 4: no error")
	}
}

// TestEpollClientUnix: on a Unix socket's path the client connects there
// and names localhost as the host.
func TestEpollClientUnix(t *testing.T) {
	ln, err := listen("unix")
	if err != nil {
		t.Fatal(err)
	}
	var hosts sync.Map
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hosts.Store(r.Host, true)
		w.WriteHeader(http.StatusAccepted)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := dialEpoll(ln.Addr().String(), "/v1/messages", token, []byte(`{}`), 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if lats, err := c.postAll(10); err != nil || len(lats) != 10 {
		t.Fatalf("%d latencies, %v", len(lats), err)
	}
	n := 0
	hosts.Range(func(k, _ any) bool {
		n++
		if k != "localhost" {
			t.Errorf("host %q", k)
		}
		return true
	})
	if n != 1 {
		t.Errorf("%d hosts", n)
	}
	dir := filepath.Dir(ln.Addr().String())
	srv.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the socket's directory left behind: %v", err)
	}
}

// TestEpollClientKeys: with useKeys every request, pipelined or not, has an
// Idempotency-Key of its own, across batches, and the same body.
func TestEpollClientKeys(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]bool{}
	var dup, bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		k := r.Header.Get("Idempotency-Key")
		mu.Lock()
		if keys[k] {
			dup.Add(1)
		}
		keys[k] = true
		mu.Unlock()
		if len(k) != len("bench-0000000000000000") || !strings.HasPrefix(k, "bench-") || string(b) != `{"x":1}` {
			bad.Add(1)
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	c, err := dialEpoll(strings.TrimPrefix(srv.URL, "http://"), "/v1/messages", token, []byte(`{"x":1}`), 6, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.useKeys()
	for _, n := range []int{7, 30} {
		if lats, err := c.postAll(n); err != nil || len(lats) != n {
			t.Fatalf("%d latencies for %d, %v", len(lats), n, err)
		}
	}
	if len(keys) != 37 || dup.Load() != 0 || bad.Load() != 0 {
		t.Errorf("%d keys for 37 requests, %d repeated, %d malformed", len(keys), dup.Load(), bad.Load())
	}
}
