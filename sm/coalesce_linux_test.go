//go:build linux

package sm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmpptrack/xmpptrack/internal/smhook"
)

// noDelayConn records, for each write to the client's socket, whether
// TCP_NODELAY was set when the write began.
type noDelayConn struct {
	net.Conn
	rs     chan struct{} // a value per <r/> written
	mu     sync.Mutex
	writes []noDelayWrite
}

type noDelayWrite struct {
	b       string
	noDelay bool
	err     error // reading TCP_NODELAY failed: noDelay means nothing
}

// readNoDelay reads the socket's TCP_NODELAY.
func (c *noDelayConn) readNoDelay() (bool, error) {
	v := -1
	raw, err := c.Conn.(*net.TCPConn).SyscallConn()
	if err == nil {
		if cerr := raw.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY) }); cerr != nil {
			err = cerr
		}
	}
	return v != 0, err
}

func (c *noDelayConn) Write(p []byte) (int, error) {
	on, err := c.readNoDelay()
	c.mu.Lock()
	c.writes = append(c.writes, noDelayWrite{string(p), on, err})
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	if bytes.HasPrefix(p, []byte("<r ")) {
		c.rs <- struct{}{}
	}
	return n, err
}

// find returns the recorded write that contains s.
func (c *noDelayConn) find(t *testing.T, s string) noDelayWrite {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.writes {
		if strings.Contains(w.b, s) {
			if w.err != nil {
				t.Fatalf("TCP_NODELAY at the write of %q: %v", s, w.err)
			}
			return w
		}
	}
	t.Fatalf("no write of %q", s)
	return noDelayWrite{}
}

// requests returns the recorded writes of <r/> from the write from on.
func (c *noDelayConn) requests(t *testing.T, from int) []noDelayWrite {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var rs []noDelayWrite
	for _, w := range c.writes[from:] {
		if strings.HasPrefix(w.b, "<r ") {
			if w.err != nil {
				t.Fatalf("TCP_NODELAY at the write of an <r/>: %v", w.err)
			}
			rs = append(rs, w)
		}
	}
	return rs
}

// noDelayNow reports whether TCP_NODELAY is set now.
func (c *noDelayConn) noDelayNow(t *testing.T) bool {
	t.Helper()
	on, err := c.readNoDelay()
	if err != nil {
		t.Fatal(err)
	}
	return on
}

// last returns the last recorded write.
func (c *noDelayConn) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes[len(c.writes)-1].b
}

func (c *noDelayConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes)
}

// requestsWritten returns a wait until every <r/> booked on st's current
// connection was written and the requester cleared its booking: a stanza
// written while a request is booked does not turn Nagle's algorithm on,
// and the requester may clear it some time after the request's bytes
// reached the socket.
func requestsWritten(st *State) func(*testing.T) {
	wrote := make(chan struct{}, 1)
	st.mu.Lock()
	st.wroteHook = func() {
		select {
		case wrote <- struct{}{}:
		default:
		}
	}
	st.mu.Unlock()
	return func(t *testing.T) {
		t.Helper()
		guard := time.After(30 * time.Second) // a guard, not a measure
		for {
			st.mu.Lock()
			cn := st.conn
			done := cn.bookAt == 0 && cn.rOut == cn.rSent
			st.mu.Unlock()
			if done {
				return
			}
			select {
			case <-wrote:
			case <-guard:
				t.Fatal("a booked <r/> was not written")
			}
		}
	}
}

// TestCoalesceInBursts: a lone message and the stanzas written while fewer
// than coalesceAt are unacknowledged go out with TCP_NODELAY, as Go sets
// it; once a burst has coalesceAt in flight, the stanzas after it are
// written with Nagle's algorithm on, and every <r/> is written with
// TCP_NODELAY set again (it sends what Nagle held, and the request does
// not wait for the server's delayed acknowledgement), as is a Pace that
// has to wait for room; after the burst a lone message goes out with
// TCP_NODELAY again.
func TestCoalesceInBursts(t *testing.T) {
	const n = coalesceAt + 8
	// No time rule in the test's span: the burst's <r/> come from the
	// count rule once the held one is answered.
	srv, rec, nd, st, c := coalesceSession(t, Config{Window: n + 8})
	sendMsg(t, st, c.sess, "lone0")
	<-nd.rs
	if ev := rec.next(t); ev != "acked:lone0" {
		t.Fatalf("got %s", ev)
	}
	if w := nd.find(t, `id="lone0"`); !w.noDelay {
		t.Error("a lone message was written with Nagle's algorithm on")
	}

	srv.mu.Lock()
	srv.holdR = true // the burst's <r/> are answered by releaseR
	srv.mu.Unlock()
	wrote := requestsWritten(st)
	from := nd.count()
	for i := 1; i <= n; i++ {
		sendMsg(t, st, c.sess, fmt.Sprintf("b%d", i))
		if i == 1 {
			<-nd.rs // its <r/>, at once: the link was idle
			wrote(t)
		}
	}
	for i := 1; i <= n; i++ {
		w := nd.find(t, fmt.Sprintf(`id="b%d"`, i))
		// Nagle is turned on after the write that makes coalesceAt
		// unacknowledged.
		if want := i <= coalesceAt; w.noDelay != want {
			t.Errorf("b%d written with TCP_NODELAY %v, want %v", i, w.noDelay, want)
		}
	}

	// A request booked now (as the time rule would) is written with
	// TCP_NODELAY set again.
	st.mu.Lock()
	cn := st.conn
	st.mu.Unlock()
	if _, _, err := st.request(t.Context(), c.sess, cn, true); err != nil {
		t.Fatal(err)
	}
	// The first message's <r/> came from the requester, written before the
	// rest of the burst; the forced one is the last write.
	rs := nd.requests(t, from)
	if len(rs) != 2 || !strings.HasPrefix(nd.last(), "<r ") {
		t.Fatalf("%d <r/> written for the burst, want 2, the forced one last", len(rs))
	}
	for i, r := range rs {
		if !r.noDelay {
			t.Errorf("<r/> %d of the burst written with Nagle's algorithm on", i+1)
		}
	}
	// More of the burst turns it on again; a Pace that finds the window
	// full turns it off.
	for i := n + 1; i <= n+8; i++ {
		sendMsg(t, st, c.sess, fmt.Sprintf("b%d", i))
	}
	if w := nd.find(t, fmt.Sprintf(`id="b%d"`, n+8)); w.noDelay {
		t.Errorf("b%d written with TCP_NODELAY after the <r/>", n+8)
	}
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := st.Pace(ended); err == nil {
		t.Fatal("Pace found room in a full window")
	}
	if !nd.noDelayNow(t) {
		t.Error("Pace waits for room with Nagle's algorithm on")
	}
	srv.releaseR()
	for i := 1; i <= n+8; i++ {
		if ev := rec.next(t); ev != fmt.Sprintf("acked:b%d", i) {
			t.Fatalf("got %s, want acked:b%d", ev, i)
		}
	}

	// (Whether it is lone for the requester depends on when the second
	// <a/> is read; its write does not.)
	sendMsg(t, st, c.sess, "lone1")
	if w := nd.find(t, `id="lone1"`); !w.noDelay {
		t.Error("a lone message after the burst was written with Nagle's algorithm on")
	}
	c.close()
}

// checkNoDelay checks that the stanzas b1 to bn were written with
// TCP_NODELAY set, and that it is still set; when says when they were.
func (c *noDelayConn) checkNoDelay(t *testing.T, n int, when string) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if w := c.find(t, fmt.Sprintf(`id="b%d"`, i)); !w.noDelay {
			t.Errorf("b%d, written %s, with Nagle's algorithm on", i, when)
		}
	}
	if !c.noDelayNow(t) {
		t.Errorf("Nagle's algorithm on %s", when)
	}
}

// ackedBurst waits for the acks of b1 to bn, in order.
func (r *recorder) ackedBurst(t *testing.T, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if ev := r.next(t); ev != fmt.Sprintf("acked:b%d", i) {
			t.Fatalf("got %s, want acked:b%d", ev, i)
		}
	}
}

// TestNoCoalesceWithoutRoom: at a window of coalesceAt (the default
// window's floor), the write that makes coalesceAt unacknowledged fills
// the window, and the next sender waits in Pace, which turns Nagle's
// algorithm off again with nothing held: so that write does not turn it
// on (before, every window-full cost two system calls for nothing). With
// the State's switch off (internal/smhook.NoCoalesce, which the bench
// sets) a burst with room in the window does not turn it on either.
func TestNoCoalesceWithoutRoom(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window int
		off    bool
	}{
		{"window full", coalesceAt, false},
		{"switched off", coalesceAt + 16, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, rec, nd, st, c := coalesceSession(t, Config{Window: tc.window})
			st.mu.Lock()
			st.noCoalesce = tc.off
			st.mu.Unlock()
			holdRequest(t, srv, st, c)
			n := min(tc.window, coalesceAt+8)
			for i := 1; i <= n; i++ {
				sendMsg(t, st, c.sess, fmt.Sprintf("b%d", i))
			}
			nd.checkNoDelay(t, n, "in the burst")
			srv.releaseR()
			rec.ackedBurst(t, n)
			c.close()
		})
	}
}

// TestNoCoalesceHook: internal/smhook.NoCoalesce reaches the States
// created after it was set.
func TestNoCoalesceHook(t *testing.T) {
	if New(Config{}).noCoalesce {
		t.Fatal("coalescing off by default")
	}
	smhook.NoCoalesce.Store(true)
	defer smhook.NoCoalesce.Store(false)
	if !New(Config{}).noCoalesce {
		t.Error("smhook.NoCoalesce did not turn coalescing off")
	}
}
