package main

import (
	"context"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestFloorHandler: the bare handler reads the whole body, answers nothing
// until released, then 202 with the gateway's headers and the answer; a
// request whose client went away is dropped without a token.
func TestFloorHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		answer := floorAnswer()
		h := floorHandler(release, answer)
		body := strings.NewReader(`{"to":"bob@example.org","body":"benchmark message"}`)
		w := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/messages", body))
			close(done)
		}()
		synctest.Wait()
		if body.Len() != 0 {
			t.Errorf("%d bytes of the body left unread while held", body.Len())
		}
		select {
		case <-done:
			t.Fatal("answered before it was released")
		default:
		}
		release <- struct{}{}
		<-done
		if w.Code != http.StatusAccepted || w.Header().Get("Content-Type") != "application/json" ||
			w.Header().Get("Cache-Control") != "no-store" || w.Body.String() != string(answer) {
			t.Errorf("answer %d %v %q", w.Code, w.Header(), w.Body)
		}

		ctx, cancel := context.WithCancel(context.Background())
		w = httptest.NewRecorder()
		done = make(chan struct{})
		go func() {
			h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/messages", strings.NewReader("{}")).WithContext(ctx))
			close(done)
		}()
		synctest.Wait()
		cancel()
		<-done
		if w.Body.Len() != 0 {
			t.Errorf("a request whose client went away answered %q", w.Body)
		}
	})
}

// TestFloorAnswer: the answer is a JSON object with the fields of the
// gateway's answer to a plain POST.
func TestFloorAnswer(t *testing.T) {
	var v struct {
		ID, State, Cursor string
		Settled           bool
	}
	if err := json.Unmarshal(floorAnswer(), &v); err != nil || v.ID == "" || v.State != "IN_TRANSIT" || v.Cursor == "" {
		t.Errorf("floorAnswer: %+v %v", v, err)
	}
}

// TestPace: the requests held are released at the rate asked for, a few
// at each tick; tokens nobody waits for are dropped beyond the channel's
// room, not saved up.
func TestPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{}, 1000)
		ctx, cancel := context.WithCancel(context.Background())
		go pace(ctx, 1500, release) // 3 per tick of 2 ms
		time.Sleep(20*time.Millisecond + time.Microsecond)
		synctest.Wait()
		if got := len(release); got != 30 {
			t.Errorf("after 20 ms at 1500/s: %d released, want 30", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := len(release); got != 1000 {
			t.Errorf("after 1.02 s at 1500/s into room for 1000: %d, want 1000", got)
		}
		cancel()
	})
}

// TestFloorOf: the floor's CPU per request, and the ratio bound: the
// library's CPU per message, every process counted, against that plus the
// floor's.
func TestFloorOf(t *testing.T) {
	ms := time.Millisecond
	direct := cpuUse{self: 500 * ms, server: 700 * ms, db: 100 * ms, recipient: 200 * ms} // 150 µs a message over 10,000
	f := floorOf(direct, 10000, 400*ms, 100*ms, 10000)
	if f.server != 40*time.Microsecond || f.load != 10*time.Microsecond {
		t.Errorf("per request server %v load %v, want 40µs 10µs", f.server, f.load)
	}
	if math.Abs(f.bound-0.75) > 1e-9 {
		t.Errorf("bound %v, want 150 / (150 + 50) = 0.75", f.bound)
	}
}

// TestListenerFile: the copy of a listener's file handed to the floor's
// server accepts the connections made to the listener's address, on TCP
// and on a Unix socket.
func TestListenerFile(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		ln, err := listen(network)
		if err != nil {
			t.Fatal(err)
		}
		f, err := listenerFile(ln)
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		child, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		a, err := child.Accept()
		if err != nil {
			t.Fatalf("%s: accept: %v", network, err)
		}
		a.Close()
		c.Close()
		child.Close()
		ln.Close()
	}
}
