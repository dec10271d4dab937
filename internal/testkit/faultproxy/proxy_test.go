package faultproxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/faultproxy"
)

// testWait bounds every wait, so that a broken proxy fails a test instead
// of hanging it.
const testWait = 10 * time.Second

// target is a TCP server on loopback that runs handle for each connection.
func target(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(testWait))
				handle(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echo sends back what it reads and passes on an orderly end.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// sink counts what it reads until the connection ends and reports it.
func sink(got chan<- int64) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}
}

// cuts collects the Cut events of a proxy.
type cuts struct {
	mu   sync.Mutex
	list []faultproxy.Cut
	ch   chan faultproxy.Cut
}

func newCuts() *cuts { return &cuts{ch: make(chan faultproxy.Cut, 100)} }

func (c *cuts) add(cut faultproxy.Cut) {
	c.mu.Lock()
	c.list = append(c.list, cut)
	c.mu.Unlock()
	c.ch <- cut
}

func (c *cuts) next(t *testing.T) faultproxy.Cut {
	t.Helper()
	select {
	case cut := <-c.ch:
		return cut
	case <-time.After(testWait):
		t.Fatal("no cut")
		return faultproxy.Cut{}
	}
}

func listen(t *testing.T, cfg faultproxy.Config) *faultproxy.Proxy {
	t.Helper()
	cfg.Logf = t.Logf
	p, err := faultproxy.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testWait))
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads it back through an echo target.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// readErr reads until the connection fails and returns the error; a
// timeout fails the test.
func readErr(t *testing.T, c net.Conn) error {
	t.Helper()
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the connection was not closed")
	}
	return err
}

func TestFaultProxyForward(t *testing.T) {
	for _, size := range []int{1, 1000, 200_000} {
		t.Run("", func(t *testing.T) {
			p := listen(t, faultproxy.Config{Target: target(t, echo)})
			c := dial(t, p)
			payload := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
			wrote := make(chan error, 1)
			go func() {
				_, err := c.Write(payload)
				c.CloseWrite()
				wrote <- err
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("got %d bytes, want %d identical ones", len(got), len(payload))
			}
			s := p.Stats()
			if s.Accepted != 1 || s.Cuts != 0 || s.Up != int64(size) || s.Down != int64(size) {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestFaultProxyCutOnCommand(t *testing.T) {
	ended := make(chan struct{})
	addr := target(t, func(c *net.TCPConn) {
		echo(c)
		close(ended)
	})
	cs := newCuts()
	p := listen(t, faultproxy.Config{Target: addr, OnCut: cs.add})
	c := dial(t, p)
	roundTrip(t, c, []byte("ping"))
	if n := p.Cut(); n != 1 {
		t.Fatalf("Cut() = %d, want 1", n)
	}
	if err := readErr(t, c); err == nil {
		t.Error("the client saw an orderly end, want a reset")
	}
	select {
	case <-ended:
	case <-time.After(testWait):
		t.Fatal("the target's side was not closed")
	}
	if got, want := cs.next(t), (faultproxy.Cut{Conn: 1, Up: 4, Down: 4}); got != want {
		t.Errorf("cut %+v, want %+v", got, want)
	}
	if s := p.Stats(); s.Cuts != 1 || s.BudgetCuts != 0 || s.Live != 0 {
		t.Errorf("stats %+v", s)
	}
	if n := p.Cut(); n != 0 {
		t.Errorf("second Cut() = %d, want 0", n)
	}
}

func TestFaultProxyBudget(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max int64
	}{
		{"one byte", 1, 1},
		{"exact", 100, 100},
		{"range", 50, 5000},
		{"min below one", -5, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan int64, 1)
			cs := newCuts()
			p := listen(t, faultproxy.Config{Target: target(t, sink(got)), MinBytes: tc.min, MaxBytes: tc.max, OnCut: cs.add})
			c := dial(t, p)
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				chunk := make([]byte, 1000)
				for range 20 {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
			// The reset is reported once, to the read or to a write in
			// progress: the read may see an end of stream instead.
			readErr(t, c)
			<-wrote
			cut := cs.next(t)
			if !cut.Budget || cut.Down != 0 || cut.Up < max(tc.min, 1) || cut.Up > tc.max {
				t.Errorf("cut %+v, want a budget cut after [%d, %d] bytes up", cut, tc.min, tc.max)
			}
			if tc.min == tc.max && cut.Up != tc.min {
				t.Errorf("cut after %d bytes, want %d", cut.Up, tc.min)
			}
			// A reset may discard bytes in flight: the target has at most
			// what was forwarded.
			if n := <-got; n > cut.Up {
				t.Errorf("target read %d bytes, more than the %d forwarded", n, cut.Up)
			}
			if s := p.Stats(); s.Cuts != 1 || s.BudgetCuts != 1 || s.Up != cut.Up {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// budgets returns the budgets of n connections in a row, each cut by its
// budget while writing more than the largest budget.
func budgets(t *testing.T, seed uint64, n int) []int64 {
	t.Helper()
	got := make(chan int64, n)
	cs := newCuts()
	p := listen(t, faultproxy.Config{Target: target(t, sink(got)), Seed: seed, MinBytes: 1, MaxBytes: 100_000, OnCut: cs.add})
	if p.Seed() != seed {
		t.Fatalf("Seed() = %d, want %d", p.Seed(), seed)
	}
	var out []int64
	for range n {
		c := dial(t, p)
		go func() {
			chunk := make([]byte, 10_000)
			for range 20 {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		readErr(t, c)
		out = append(out, cs.next(t).Up)
		<-got
	}
	return out
}

func TestFaultProxySeedReproducible(t *testing.T) {
	a, b, other := budgets(t, 42, 5), budgets(t, 42, 5), budgets(t, 43, 5)
	t.Logf("seed 42: %v; seed 43: %v", a, other)
	if !slices.Equal(a, b) {
		t.Errorf("seed 42 gave %v, then %v", a, b)
	}
	if slices.Equal(a, other) {
		t.Errorf("seeds 42 and 43 gave the same budgets %v", a)
	}
	p := listen(t, faultproxy.Config{Target: "127.0.0.1:1"})
	if p.Seed() == 0 {
		t.Error("a zero Seed was not replaced by a random one")
	}
}

func TestFaultProxySetBudget(t *testing.T) {
	cs := newCuts()
	p := listen(t, faultproxy.Config{Target: target(t, echo), OnCut: cs.add})
	c := dial(t, p)
	roundTrip(t, c, []byte("hello"))

	// A budget turned off again before it ran out cuts nothing.
	if err := p.SetBudget(1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := p.SetBudget(0, 0); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, bytes.Repeat([]byte("x"), 5000))

	// A live connection gets a budget counted from now.
	if err := p.SetBudget(7, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("0123456789abcdefghij")); err != nil {
		t.Fatal(err)
	}
	readErr(t, c)
	if got, want := cs.next(t), (faultproxy.Cut{Conn: 1, Up: 5 + 5000 + 7, Down: 5 + 5000, Budget: true}); got != want {
		t.Errorf("cut %+v, want %+v", got, want)
	}

	for _, r := range [][2]int64{{10, 5}, {0, -1}} {
		if err := p.SetBudget(r[0], r[1]); err == nil {
			t.Errorf("SetBudget(%d, %d) succeeded", r[0], r[1])
		}
	}
}

func TestFaultProxyInvalidConfig(t *testing.T) {
	for _, cfg := range []faultproxy.Config{
		{},
		{Target: "127.0.0.1:1", MinBytes: 10, MaxBytes: 5},
		{Target: "127.0.0.1:1", MaxBytes: -1},
	} {
		if p, err := faultproxy.Listen(cfg); err == nil {
			p.Close()
			t.Errorf("Listen(%+v) succeeded", cfg)
		}
	}
}

func TestFaultProxyTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := listen(t, faultproxy.Config{Target: addr})
	// The client's connection is reset, during or after its handshake.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.SetDeadline(time.Now().Add(testWait))
		readErr(t, c)
		c.Close()
	}
	if s := p.Stats(); s.Accepted != 1 || s.DialFailures != 1 || s.Cuts != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestFaultProxyClose(t *testing.T) {
	cs := newCuts()
	p := listen(t, faultproxy.Config{Target: target(t, echo), OnCut: cs.add})
	c := dial(t, p)
	roundTrip(t, c, []byte("hi"))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := readErr(t, c); err == nil {
		t.Error("the client saw an orderly end, want a reset")
	}
	if cut := cs.next(t); cut.Budget || cut.Conn != 1 {
		t.Errorf("cut %+v", cut)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Error("the proxy still accepts after Close")
	}
}

// acker counts what it reads, writes one byte back for every 100 bytes,
// and reports the total and the read error (nil for an orderly end).
type ackerResult struct {
	n   int64
	err error
}

func acker(got chan<- ackerResult) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		var total int64
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			for range (total+int64(n))/100 - total/100 {
				c.Write([]byte{'a'})
			}
			total += int64(n)
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				got <- ackerResult{total, err}
				return
			}
		}
	}
}

func TestFaultProxyAligned(t *testing.T) {
	for _, tc := range []struct {
		name    string
		min     int64 // budget; 0: cut on command
		command bool
	}{
		{"budget", 250, false},
		{"budget one byte", 1, false},
		{"command", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan ackerResult, 1)
			cs := newCuts()
			p := listen(t, faultproxy.Config{Target: target(t, acker(got)), Aligned: true, OnCut: cs.add})
			c := dial(t, p)
			chunk := bytes.Repeat([]byte("x"), 100)
			ack := make([]byte, 1)
			// Three writes forwarded before any budget.
			for range 3 {
				if _, err := c.Write(chunk); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, ack); err != nil {
					t.Fatal(err)
				}
			}
			if tc.min > 0 {
				p.SetBudget(tc.min, tc.min)
			}
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				for range 50 {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
			if tc.command {
				p.Cut()
			}
			readErr(t, c)
			<-wrote
			cut := cs.next(t)
			res := <-got
			if res.err != nil {
				t.Errorf("the target saw %v, want an orderly end", res.err)
			}
			if res.n != cut.Up || res.n%100 != 0 {
				t.Errorf("the target got %d bytes, the proxy forwarded %d; want the same, a whole number of writes", res.n, cut.Up)
			}
			if tc.min > 0 && (!cut.Budget || cut.Up < 300+tc.min) {
				t.Errorf("cut %+v, want a budget cut after at least %d bytes", cut, 300+tc.min)
			}
		})
	}
}

// tapBuf is a Tap writer that records what it gets and when it is closed.
type tapBuf struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	closed chan struct{}
}

func newTapBuf() *tapBuf { return &tapBuf{closed: make(chan struct{})} }

func (b *tapBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.closed:
		panic("write after Close")
	default:
	}
	return b.buf.Write(p)
}

func (b *tapBuf) Close() error {
	close(b.closed)
	return nil
}

func (b *tapBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestFaultProxyTap(t *testing.T) {
	var mu sync.Mutex
	taps := map[int][2]*tapBuf{}
	p := listen(t, faultproxy.Config{Target: target(t, func(c *net.TCPConn) {
		buf := make([]byte, 100)
		n, _ := c.Read(buf)
		c.Write(bytes.ToUpper(buf[:n]))
		c.CloseWrite()
		io.Copy(io.Discard, c)
	}), Tap: func(conn int) (io.Writer, io.Writer) {
		up, down := newTapBuf(), newTapBuf()
		mu.Lock()
		taps[conn] = [2]*tapBuf{up, down}
		mu.Unlock()
		return up, down
	}})
	c := dial(t, p)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "HELLO" {
		t.Fatalf("read %q, %v", got, err)
	}
	c.Close()
	mu.Lock()
	tb := taps[1]
	mu.Unlock()
	for _, b := range tb {
		select {
		case <-b.closed:
		case <-time.After(testWait):
			t.Fatal("a tap was not closed")
		}
	}
	if tb[0].String() != "hello" || tb[1].String() != "HELLO" {
		t.Errorf("taps got %q up and %q down", tb[0], tb[1])
	}
}

// chanWriter sends a copy of every write on a channel.
type chanWriter chan []byte

func (w chanWriter) Write(p []byte) (int, error) {
	w <- bytes.Clone(p)
	return len(p), nil
}

func TestFaultProxyAlignedUnits(t *testing.T) {
	got := make(chan []byte, 1)
	forwarded := make(chanWriter, 100)
	cs := newCuts()
	p := listen(t, faultproxy.Config{
		Target: target(t, func(c *net.TCPConn) {
			b, err := io.ReadAll(c)
			if err != nil {
				b = append(b, "(reset)"...)
			}
			got <- b
		}),
		Aligned: true,
		Units:   faultproxy.XMPPUnits,
		Tap:     func(int) (io.Writer, io.Writer) { return forwarded, nil },
		OnCut:   cs.add,
	})
	c := dial(t, p)
	// A unit completed by a later write goes through whole; the start of
	// the last one is held back and dropped at the cut.
	const whole = `<stream:stream a='b'><a>x</a><b/>`
	for _, w := range []string{`<stream:stream a='b'><a>`, `x</a><b/>`, `<c><d/>`} {
		if _, err := c.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	var fw []byte
	for len(fw) < len(whole) {
		select {
		case b := <-forwarded:
			fw = append(fw, b...)
		case <-time.After(testWait):
			t.Fatalf("forwarded only %q", fw)
		}
	}
	p.Cut()
	readErr(t, c)
	if b := <-got; string(b) != whole || string(fw) != whole {
		t.Errorf("target got %q, tap saw %q; want %q", b, fw, whole)
	}
	if cut := cs.next(t); cut.Up != int64(len(whole)) {
		t.Errorf("cut %+v", cut)
	}
}

// With Aligned, the next connection reaches the target only once the target
// has closed the one cut before.
func TestFaultProxyAlignedWaitsForClose(t *testing.T) {
	events := make(chan string, 10)
	release := make(chan struct{})
	var accepted sync.Mutex
	count := 0
	p := listen(t, faultproxy.Config{Target: target(t, func(c *net.TCPConn) {
		accepted.Lock()
		count++
		n := count
		accepted.Unlock()
		events <- fmt.Sprint("accept", n)
		c.Write([]byte{'!'})
		io.Copy(io.Discard, c)
		if n == 1 {
			events <- "eof1"
			select {
			case <-release:
			case <-time.After(testWait):
			}
			events <- "close1"
		}
	}), Aligned: true})
	c1 := dial(t, p)
	if got := <-events; got != "accept1" {
		t.Fatalf("event %q", got)
	}
	if _, err := io.ReadFull(c1, make([]byte, 1)); err != nil { // the link is up
		t.Fatal(err)
	}
	if n := p.Cut(); n != 1 {
		t.Fatalf("Cut() = %d", n)
	}
	readErr(t, c1)
	if got := <-events; got != "eof1" {
		t.Fatalf("event %q, want the target to see an orderly end", got)
	}
	c2 := dial(t, p)
	c2.Write([]byte("hello"))
	close(release)
	for _, want := range []string{"close1", "accept2"} {
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(testWait):
			t.Fatalf("no event, want %q", want)
		}
	}
}

// TestFaultProxyFreeze: after Freeze nothing more reaches either side,
// not even the client's end of stream, and the connection stays live
// until Cut.
func TestFaultProxyFreeze(t *testing.T) {
	got := make(chan int64, 1)
	addr := target(t, func(c *net.TCPConn) {
		var n int64
		buf := make([]byte, 1024)
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if k > 0 {
				c.Write(buf[:k])
			}
			if err != nil {
				break
			}
		}
		got <- n
	})
	p := listen(t, faultproxy.Config{Target: addr})
	c := dial(t, p)
	roundTrip(t, c, []byte("ping"))
	if n := p.Freeze(); n != 1 {
		t.Fatalf("Freeze() = %d, want 1", n)
	}
	if _, err := c.Write([]byte("lost in the freeze")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if s := p.Stats(); s.Frozen != 1 || s.Live != 1 || s.Up != 4 {
		t.Fatalf("stats %+v", s)
	}
	if n := p.Cut(); n != 1 {
		t.Fatalf("Cut() after the client's end = %d, want 1: the frozen proxy must not notice it", n)
	}
	select {
	case n := <-got:
		if n != 4 {
			t.Errorf("the target read %d bytes, want the 4 before the freeze", n)
		}
	case <-time.After(testWait):
		t.Fatal("the target's side was not closed by Cut")
	}
	if s := p.Stats(); s.Up != 4 || s.Down != 4 {
		t.Errorf("stats %+v", s)
	}
}
