//go:build linux

package sm

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"mellium.im/xmlstream"
)

// tcpLink puts a real loopback TCP connection, with small buffers, between
// the client and its end of the pipe to the scripted server: the client's
// socket sees the peer's acknowledgements as a real link makes them. The
// far end forwards what it reads to the server, at most chunk bytes per
// pause (0: as it comes), and stops reading once frozen (a server that
// takes no byte more, its TCP alive: the window fills, then the client's
// writes block in the kernel).
type tcpLink struct {
	frozen atomic.Bool
	chunk  int
	pause  time.Duration
	outer  func(net.Conn) net.Conn // wraps the client's socket; nil: none
	// userTimeout sets TCP_USER_TIMEOUT (35 s) on the client's socket, as
	// the xmpptrack client's dialer does.
	userTimeout bool
	// sndbuf and rcvbuf are the client's send and the far end's receive
	// buffer sizes (0: 4096; the kernel doubles them).
	sndbuf, rcvbuf int

	mu       sync.Mutex
	sock     syscall.RawConn // the client's socket of the latest link
	watching bool            // the far end's reads are being timed (watchGaps)
	lastRead time.Time       // the far end's last read, while watching
	wanted   bool            // bytes of ours waited in the client's socket then
	maxGap   time.Duration   // the longest time bytes waited without a read, while watching
}

// watchGaps starts timing the far end's reads: a link that moves bytes
// all along reads at least every pause, and a longer gap while bytes of
// ours wait (a loaded machine that did not run the forwarding goroutine,
// or the server's reader behind it) is a stall of the link that the
// State, rightly, may take for a dead one. Time with nothing to carry
// does not count, nor time after the link was cut.
func (lk *tcpLink) watchGaps() {
	lk.mu.Lock()
	lk.watching, lk.lastRead, lk.maxGap = true, time.Now(), 0
	lk.wanted = lk.pendingLocked()
	lk.mu.Unlock()
}

// pendingLocked reports whether the client's socket holds bytes of ours
// not yet acknowledged. The caller holds lk.mu.
func (lk *tcpLink) pendingLocked() bool {
	if lk.sock == nil {
		return false
	}
	_, q, ok := sendProgress(lk.sock)
	return ok && q > 0
}

// beginRead returns the time a read of the far end begins and whether
// bytes of ours wait in the client's socket then (see read).
func (lk *tcpLink) beginRead() (time.Time, bool) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return time.Now(), lk.watching && lk.pendingLocked()
}

// read notes a read of the far end that began at began (ended: it failed,
// the link is cut; the watch stops there). waiting says bytes of ours
// waited in the client's socket when it began: then the time since the
// last read counts too, though the last read left the socket empty (the
// client wrote after it, and the far end was late to read).
func (lk *tcpLink) read(ended, waiting bool, began time.Time) {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if !lk.watching {
		return
	}
	now := time.Now()
	switch {
	case lk.wanted:
		lk.maxGap = max(lk.maxGap, now.Sub(lk.lastRead))
	case waiting:
		lk.maxGap = max(lk.maxGap, began.Sub(lk.lastRead))
	}
	lk.lastRead, lk.wanted, lk.watching = now, lk.pendingLocked(), !ended
}

// gap returns the longest time bytes of ours waited without a read of
// the far end since watchGaps, the current wait included.
func (lk *tcpLink) gap() time.Duration {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.watching && lk.wanted {
		return max(lk.maxGap, time.Since(lk.lastRead))
	}
	return lk.maxGap
}

func (lk *tcpLink) wrap(t *testing.T) func(net.Conn) net.Conn {
	return func(pipe net.Conn) net.Conn {
		// Small buffers from the start (the window is set at the handshake).
		small := func(opt, n int) func(string, string, syscall.RawConn) error {
			if n == 0 {
				n = 4096
			}
			return func(_, _ string, raw syscall.RawConn) error {
				return raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, n) })
			}
		}
		l, err := (&net.ListenConfig{Control: small(unix.SO_RCVBUF, lk.rcvbuf)}).Listen(t.Context(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			accepted <- c
		}()
		near, err := (&net.Dialer{Control: small(unix.SO_SNDBUF, lk.sndbuf)}).Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		far := <-accepted
		lk.mu.Lock()
		lk.sock = socketOf(near)
		lk.mu.Unlock()
		if lk.userTimeout {
			raw, _ := near.(*net.TCPConn).SyscallConn()
			raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 35000) })
		}
		stop := make(chan struct{})
		var once sync.Once
		closeAll := func() { once.Do(func() { close(stop); near.Close(); far.Close(); pipe.Close() }) }
		t.Cleanup(closeAll)
		go func() { // client to server
			buf := make([]byte, 32<<10)
			for {
				if lk.frozen.Load() {
					<-stop
					return
				}
				p := buf
				if lk.chunk > 0 {
					time.Sleep(lk.pause)
					p = buf[:lk.chunk]
				}
				began, waiting := lk.beginRead()
				n, err := far.Read(p)
				if n > 0 || err != nil {
					lk.read(err != nil, waiting, began)
				}
				if n > 0 && !lk.frozen.Load() {
					pipe.Write(p[:n])
				}
				if err != nil {
					closeAll()
					return
				}
			}
		}()
		go func() { // server to client
			io.Copy(far, pipe)
			closeAll()
		}()
		if lk.outer != nil {
			return lk.outer(near)
		}
		return near
	}
}

// tcpEnabled dials srv through lk until a connection is enabled.
func tcpEnabled(t *testing.T, srv *fakeServer, cfg Config, lk *tcpLink) (*State, *client) {
	t.Helper()
	srv.clientWrap = lk.wrap(t)
	return enabledVia(t, srv, cfg, nil)
}

// TestStuckSocketFound: the server's TCP takes no byte more while a large
// stanza is being written, and the idle probe's <r/> waits behind it,
// never getting out. The socket shows no progress (its peer acknowledges
// nothing), so the connection is found dead about an ack bound after the
// probe, not after the write bound (stuckWriteFactor times AckTimeout),
// which alone bounded it before the socket's progress was looked at.
func TestStuckSocketFound(t *testing.T) {
	srv := newFakeServer(t)
	rec := newRecorder()
	lk := &tcpLink{}
	st, c := tcpEnabled(t, srv, rec.config(Config{AckTimeout: 200 * time.Millisecond, IdleProbe: 300 * time.Millisecond}), lk)
	sendMsg(t, st, c.sess, "m0")
	if ev := rec.next(t); ev != "acked:m0" {
		t.Fatalf("got %s", ev)
	}
	lk.frozen.Store(true)
	sent := make(chan error, 1)
	go func() {
		sent <- c.sess.Send(t.Context(), streamedMsg("big", 1<<20))
	}()
	select {
	case <-c.served:
	case <-time.After(30 * time.Second): // a guard, not a measure: the write bound is 4.8 s
		t.Fatal("the stuck connection was not ended")
	}
	var ae *AckTimeoutError
	if err := c.waitServed(); !errors.As(err, &ae) {
		t.Fatalf("Serve: %v, want an *AckTimeoutError", err)
	}
	if wb := stuckWriteFactor * 200 * time.Millisecond; ae.Bound >= wb {
		t.Errorf("ended by the write bound (%v), not by the socket's lack of progress", ae)
	}
	if err := <-sent; err == nil {
		t.Error("the stuck write succeeded")
	}
}

// streamedMsg returns the tokens of a message stanza whose body of size
// bytes comes in CharData tokens of 4 KiB: the encoder escapes and writes
// each as it comes, so the stanza's bytes reach the socket from its start.
// A body of one token (rawReader of the whole stanza) is decoded and
// escaped whole before a byte of it is written: seconds for 1 MiB under
// -race on a loaded machine, while the idle probe waited for a write that
// had not reached the socket yet, which only the write bound could end
// (TestStuckSocketFound's flake).
func streamedMsg(id string, size int) xml.TokenReader {
	chunk := xml.CharData(strings.Repeat("x", 4096))
	left := size
	body := xmlstream.ReaderFunc(func() (xml.Token, error) {
		if left <= 0 {
			return nil, io.EOF
		}
		left -= len(chunk)
		return chunk, nil
	})
	msg := xml.StartElement{Name: xml.Name{Space: "jabber:client", Local: "message"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "to"}, Value: "peer@example.org"},
		{Name: xml.Name{Local: "id"}, Value: id},
		{Name: xml.Name{Local: "type"}, Value: "chat"},
	}}
	return xmlstream.Wrap(xmlstream.Wrap(body, xml.StartElement{Name: xml.Name{Space: "jabber:client", Local: "body"}}), msg)
}

// TestSlowSocketNotCut: a stanza written over a slow TCP link (1 KiB per
// 20 ms), with a send buffer that takes it whole: the <r/> written after
// it waits in the socket's send queue behind its 64 KiB, about 1.3 s, more
// than the ack bound (1 s; the link would have to stall for that long to
// be cut, a margin for a loaded machine). The peer acknowledges bytes all
// along (a small receive buffer), so the socket shows progress at each
// look, the link stays up and the stanza is acknowledged; before the
// State looked at the socket, the written <r/>'s ack bound cut it.
func TestSlowSocketNotCut(t *testing.T) {
	untilLinkMoved(t, time.Second, slowSocketNotCut)
}

// slowSocketNotCut is one attempt of TestSlowSocketNotCut: the longest
// time the link's far end went without a read while the stanza was being
// written and acknowledged, and the error that cut the link (nil: it
// stood).
func slowSocketNotCut(t *testing.T, ack time.Duration) (time.Duration, error) {
	srv := newFakeServer(t)
	rec := newRecorder()
	lk := &tcpLink{chunk: 1024, pause: 20 * time.Millisecond, sndbuf: 128 << 10, rcvbuf: 1024}
	st, c := tcpEnabled(t, srv, rec.config(Config{AckTimeout: ack, IdleProbe: 50 * time.Millisecond}), lk)
	r, err := st.Reserve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	lk.watchGaps()
	msg := `<message xmlns='jabber:client' to='peer@example.org' id='big' type='chat'><body>` + strings.Repeat("x", 64<<10) + `</body></message>`
	if err := c.sess.Send(t.Context(), rawReader([]byte(msg))); err != nil {
		return lk.gap(), fmt.Errorf("the slow link was taken for dead mid-write: Send: %v; Serve: %v", err, c.waitServed())
	}
	r.Release()
	select {
	case ev := <-rec.ch:
		if ev != "acked:big" {
			t.Fatalf("got %s", ev)
		}
	case <-c.served:
		return lk.gap(), fmt.Errorf("the connection ended after the slow write: %v", c.serveEr)
	}
	c.close()
	return 0, nil
}

// untilLinkMoved runs attempt, with the ack bound given, until it reports
// no failure. The tcpLink is moved by goroutines in real time: an attempt
// that failed after the link's far end went half a bound or more without a
// read (a loaded machine did not run them) proves nothing either way, and
// is tried again, up to five attempts; one that failed while the link
// moved all along fails the test.
func untilLinkMoved(t *testing.T, ack time.Duration, attempt func(*testing.T, time.Duration) (time.Duration, error)) {
	t.Helper()
	var stalled []string
	fail := func() string {
		return fmt.Sprintf("the link stalled in every attempt (the machine is loaded, or the stalls are the link's own):\n%s", strings.Join(stalled, "\n"))
	}
	retry(t, 5, fail, func() bool {
		gap, err := attempt(t, ack)
		switch {
		case err == nil:
			return true
		case gap < ack/2:
			t.Fatalf("%v (the link's far end read at least every %v while bytes waited)", err, gap)
		}
		stalled = append(stalled, fmt.Sprintf("%v, after %v without a read while bytes waited", err, gap))
		t.Logf("attempt %d: %s: trying again", len(stalled), stalled[len(stalled)-1])
		return false
	})
}

// heldConn holds every write in user space once shut, above the socket
// it embeds (a wrapper that stalls): the kernel has nothing to send.
type heldConn struct {
	net.Conn
	shut   atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func (h *heldConn) Write(p []byte) (int, error) {
	if h.shut.Load() {
		<-h.closed
		return 0, net.ErrClosed
	}
	return h.Conn.Write(p)
}

func (h *heldConn) Close() error {
	h.once.Do(func() { close(h.closed) })
	return h.Conn.Close()
}

// TestHeldAboveSocketBounded: a write held in a wrapper above a socket
// with TCP_USER_TIMEOUT (the kernel has nothing pending, so neither its
// progress nor its timeout can tell) is ended by the write bound (a53ba1a
// left it unbounded where it found TCP_USER_TIMEOUT).
func TestHeldAboveSocketBounded(t *testing.T) {
	srv := newFakeServer(t)
	rec := newRecorder()
	var h *heldConn
	lk := &tcpLink{userTimeout: true, outer: func(c net.Conn) net.Conn {
		h = &heldConn{Conn: c, closed: make(chan struct{})}
		return h
	}}
	const ackTimeout = 20 * time.Millisecond
	_, c := tcpEnabled(t, srv, rec.config(Config{AckTimeout: ackTimeout, IdleProbe: 50 * time.Millisecond}), lk)
	h.shut.Store(true)
	select {
	case <-c.served:
	case <-time.After(30 * time.Second): // a guard, not a measure: the write bound is 0.48 s
		t.Fatal("the held write was not ended")
	}
	var ae *AckTimeoutError
	if err := c.waitServed(); !errors.As(err, &ae) || ae.Bound != stuckWriteFactor*ackTimeout {
		t.Fatalf("Serve: %v, want an *AckTimeoutError of the write bound", err)
	}
}

// TestSilentServerBusyLink: the server's TCP takes our bytes but the
// server never answers a request, while the application keeps writing,
// so the socket always holds bytes of ours and shows progress. The
// connection is ended about an ack bound after the peer's TCP took the
// request's bytes (Waited at least one and a half bounds: the rule that
// fired is that one, not a stall of the link, which ends it after one);
// counting any progress as life kept it up for as long as the writes went
// on. The link is moved by goroutines in real time: an attempt in which
// it stalled for half a bound (a loaded machine) proves nothing either way
// and is tried again.
func TestSilentServerBusyLink(t *testing.T) {
	untilLinkMoved(t, 200*time.Millisecond, silentServerBusyLink)
}

// silentServerBusyLink is one attempt of TestSilentServerBusyLink: the
// longest time the link's far end went without a read from the request
// on, and an error if the connection was ended by the rule for a stalled
// link rather than by the unanswered request.
func silentServerBusyLink(t *testing.T, ack time.Duration) (time.Duration, error) {
	srv := newFakeServer(t)
	rec := newRecorder()
	lk := &tcpLink{chunk: 1024, pause: 20 * time.Millisecond, sndbuf: 64 << 10, rcvbuf: 1024}
	st, c := tcpEnabled(t, srv, rec.config(Config{AckTimeout: ack, IdleProbe: time.Hour}), lk)
	holdAcks(srv)
	sendMsg(t, st, c.sess, "m0")
	lk.watchGaps()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			raw := fmt.Sprintf(`<message xmlns='jabber:client' to='peer@example.org' id='b%d' type='chat'><body>%s</body></message>`, i, strings.Repeat("x", 2048))
			if c.sess.Send(t.Context(), rawReader([]byte(raw))) != nil {
				return
			}
		}
	}()
	select {
	case <-c.served:
	case <-time.After(10 * time.Second): // a guard, not a measure: 50 ack bounds
		t.Fatal("a server that answers no request stays connected while the link moves other bytes")
	}
	gap := lk.gap()
	var ae *AckTimeoutError
	if err := c.waitServed(); !errors.As(err, &ae) || ae.Bound != ack {
		t.Fatalf("Serve: %v, want an *AckTimeoutError of the ack bound", err)
	}
	if ae.Waited < 3*ae.Bound/2 {
		return gap, fmt.Errorf("%v: ended by a stall of the link, not by the unanswered request", ae)
	}
	return 0, nil
}

// TestMarkNotShort: with the writer stopped, the bytes acknowledged plus
// those queued (sendProgress) never fall short of everything written,
// while the peer reads and acknowledges: a mark short of the request's end
// could be taken as reached before the server's TCP held the request.
func TestMarkNotShort(t *testing.T) {
	near, far := loopbackPair(t, 0)
	raw := socketOf(near)
	a0, q0, ok := sendProgress(raw)
	if !ok || q0 != 0 {
		t.Fatalf("sendProgress: acked %d, queued %d, ok %v", a0, q0, ok)
	}
	const chunk = 256 << 10
	buf := make([]byte, chunk)
	for round := range 20 {
		done := make(chan struct{})
		var readErr error
		go func() { // the peer reads it all, in small pieces
			defer close(done)
			p := make([]byte, 4096)
			for n := 0; n < chunk; {
				m, err := far.Read(p)
				if err != nil {
					readErr = err
					return
				}
				n += m
			}
		}()
		if _, err := near.Write(buf); err != nil {
			t.Fatal(err)
		}
		want := a0 + uint64(round+1)*chunk
		for {
			a, q, ok := sendProgress(raw)
			if !ok {
				t.Fatal("sendProgress: the socket cannot tell")
			}
			if a+q < want {
				t.Fatalf("round %d: acked %d + queued %d = %d, short of the %d written", round, a-a0, q, a+q-a0, want-a0)
			}
			if q == 0 {
				break
			}
			select {
			case <-done:
				if readErr != nil { // nobody drains the socket any more
					t.Fatalf("round %d: the peer's read: %v", round, readErr)
				}
			default:
			}
		}
		<-done
	}
}

// TestMarkTakenAtWrite: the point the server's TCP must acknowledge
// before an unanswered request counts against the ack bound is read as
// soon as the <r/> is written, not at the first look half an ack bound
// later, when it would also cover everything written meanwhile (a silent
// server on a busy link was then found only after the send queue drained).
func TestMarkTakenAtWrite(t *testing.T) {
	srv := newFakeServer(t)
	rec := newRecorder()
	lk := &tcpLink{}
	st, c := tcpEnabled(t, srv, rec.config(Config{AckTimeout: time.Hour, IdleProbe: time.Hour}), lk)
	holdAcks(srv)
	sendMsg(t, st, c.sess, "m0")
	for { // the requester writes the <r/> on its own goroutine
		st.mu.Lock()
		cn := st.conn
		out, markFor, rWait, ok := cn.rOut, cn.markFor, cn.rWait, cn.sock != nil
		st.mu.Unlock()
		if !ok {
			t.Fatal("no socket found under the connection")
		}
		if out == 0 {
			runtime.Gosched()
			continue
		}
		if markFor == 0 || markFor != rWait {
			t.Fatalf("after the <r/> was written: mark for %d, awaited since %d", markFor, rWait)
		}
		return
	}
}

// TestSocketInboundProgress: where the State looks at the socket, a stanza
// read from the server is progress too: an answer awaited for an ack
// bound, its request held by the server's TCP, is not overdue while
// stanzas came within the bound, and is overdue an ack bound after the
// last one; the read cap ends the wait whatever comes in. The decisions
// are taken at given instants, on a real socket whose bytes were all
// acknowledged.
func TestSocketInboundProgress(t *testing.T) {
	near, far := loopbackPair(t, 0)
	if _, err := near.Write([]byte("<r/>")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(far, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	raw := socketOf(near)
	waitQueue(t, raw, false)
	const ack = int64(time.Second)
	c, t0 := awaiting(t, raw)
	for _, step := range []struct {
		at, inAt int64 // the look, and the last stanza read (0: none)
		alive    bool
	}{
		{at: ack / 2, alive: true}, // the first look: the mark is acknowledged
		{at: ack - ack/10, inAt: ack - ack/5, alive: true},
		{at: 3 * ack / 2, alive: true},       // 0.7 bound after the last stanza
		{at: 2*ack - ack/5, alive: false},    // a bound after it
		{at: 2*ack - ack/5 - 1, alive: true}, // just before
		{at: 10 * ack, inAt: 10*ack - 1, alive: true},
	} {
		if step.inAt != 0 {
			c.inAt = t0 + step.inAt
		}
		c.fatal = nil
		if alive := c.progressLocked(t0 + step.at); alive != step.alive {
			t.Fatalf("at %v, last stanza at %v: alive %v, want %v (%v)",
				time.Duration(step.at), time.Duration(c.inAt-t0), alive, step.alive, c.fatal)
		}
	}
	// The read cap: a look is due there, and stanzas excuse the wait no
	// longer (nothing pending: the written request is overdue).
	c.progOK, c.lookAt, c.inAt = true, t0+23*ack+ack/2+ack/4, t0+23*ack+ack/2+ack/4
	dl, _, _, check := c.deadlineLocked()
	if want := t0 + stuckWriteFactor*ack; dl != want || !check {
		t.Fatalf("deadline %v, check %v; want a look at the read cap, %v", time.Duration(dl-t0), check, time.Duration(want-t0))
	}
	if c.aliveLocked(t0 + stuckWriteFactor*ack) {
		t.Fatal("alive at the read cap, stanzas read but no answer")
	}
}

// TestSocketPendingPastCap: with bytes of ours pending, the read cap
// limits only what stanzas read excuse. The peer's TCP takes nothing for
// an ack bound while stanzas come in: alive (the server may wait for us to
// read before it reads on), until the cap. The peer's TCP takes a little
// at every look and nothing comes in: alive past the cap (a slow link;
// before, the cap cut it). Decisions at given instants, on a real socket.
func TestSocketPendingPastCap(t *testing.T) {
	near, far := loopbackPair(t, 4096)
	// More than the peer takes (at most a few KiB a look, 58 looks).
	const size = 4 << 20
	go near.Write(make([]byte, size)) // ends when the test closes near
	raw := socketOf(near)
	waitQueue(t, raw, true)
	const ack = int64(time.Second)
	const cap = stuckWriteFactor * ack
	for _, inbound := range []bool{true, false} {
		c, t0 := awaiting(t, raw)
		for at := ack / 2; at <= cap+5*ack; at += ack / 2 {
			now := t0 + at
			if inbound {
				c.inAt = now - ack/4
			} else {
				takeLittle(t, far, raw, c.progAcked) // the peer takes a little
			}
			want := !inbound || at < cap
			if got := c.aliveLocked(now); got != want {
				t.Fatalf("inbound %v, at %v: alive %v, want %v (%v)", inbound, time.Duration(at), got, want, c.fatal)
			}
			if !want {
				break
			}
		}
	}
}

// takeLittle has the peer read from far, a KiB at a time, until its TCP
// acknowledged more than acked bytes of ours on raw. One read alone may
// not do: the peer's TCP acknowledges the bytes its buffer takes, and it
// opens its window again only once enough of the buffer is free (how much
// a read frees depends on how the bytes arrived), so waiting after a
// fixed read could wait forever (the flake of this test under load).
func takeLittle(t *testing.T, far net.Conn, raw syscall.RawConn, acked uint64) {
	t.Helper()
	guard := time.Now().Add(10 * time.Second) // a guard, not a measure: ends a hang only
	far.SetReadDeadline(guard)
	buf := make([]byte, 1024)
	for {
		if _, err := io.ReadFull(far, buf); err != nil || time.Now().After(guard) {
			t.Fatalf("the peer's reads are not acknowledged (%v)", err)
		}
		for range 100 { // the acknowledgement's way back, before reading on
			if a, _, ok := sendProgress(raw); ok && a > acked {
				return
			}
			runtime.Gosched()
		}
	}
}

// loopbackPair returns the two ends of a loopback TCP connection, closed
// when the test ends; the far end's receive buffer is rcvbuf bytes (0:
// the system's).
func loopbackPair(t *testing.T, rcvbuf int) (near, far net.Conn) {
	t.Helper()
	var lc net.ListenConfig
	if rcvbuf > 0 {
		lc.Control = func(_, _ string, raw syscall.RawConn) error {
			return raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf) })
		}
	}
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := l.Accept(); acc <- c }()
	near, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { near.Close() })
	far = <-acc
	if far == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { far.Close() })
	return near, far
}

// TestSocketDrainedNotCut: a request written behind bytes that take longer
// than the ack bound to drain (a slow link) is not taken for dead at the
// first look that finds the send queue empty: its answer gets a whole
// bound from that look (the server's TCP took the request only then).
// Before, the rule for an empty queue counted from the request's write,
// and cut the link at that look unless the answer had already come (the
// flake of TestSlowSocketNotCut on a loaded machine). Decisions at given
// instants, on a real socket whose peer reads nothing, then everything.
func TestSocketDrainedNotCut(t *testing.T) {
	raw, drain := queuedSocket(t)
	const ack = int64(time.Second)
	c, t0 := awaiting(t, raw) // written behind the bytes pending
	look := looker(t, c, t0)
	look(ack/2, true) // bytes pending, moving or not: within the bound
	drain()
	look(ack+ack/5, true)     // drained, a bound after the write: the request is taken now
	look(2*ack+ack/5-1, true) // just under a bound after that look
	look(2*ack+ack/5, false)  // a bound after it, unanswered
}

// waitQueue waits until the kernel holds bytes of ours on raw (pending)
// or none, as the socket tells.
func waitQueue(t *testing.T, raw syscall.RawConn, pending bool) {
	t.Helper()
	guard := time.Now().Add(10 * time.Second) // a guard, not a measure: no byte acknowledged yet reads as !ok
	for {
		_, q, ok := sendProgress(raw)
		if ok && (q > 0) == pending {
			return
		}
		if time.Now().After(guard) {
			t.Fatalf("sendProgress: ok %v, queued %d, want pending %v", ok, q, pending)
		}
		runtime.Gosched()
	}
}

// awaiting returns a connection on raw, with an AckTimeout of 1 s, whose
// answer is awaited since t0; its State's lock is held until the test
// ends, for the tests to call its Locked methods.
func awaiting(t *testing.T, raw syscall.RawConn) (c *conn, t0 int64) {
	st := New(Config{AckTimeout: time.Second})
	c = &conn{st: st, sock: raw, smOn: true}
	t0 = int64(1e15)
	st.mu.Lock()
	t.Cleanup(st.mu.Unlock)
	c.rWait = t0
	return c, t0
}

// TestQueuedAtWriteFoundInABound: bytes of ours held by the kernel right
// after the <r/> was written (as they nearly always are, even on
// loopback) do not stretch the wait: a silent server whose TCP took them
// all by the first look is found an ack bound after the write, not one
// and a half (the look that found them acknowledged plus a bound). Only
// bytes seen pending at a look make the bound run from the drain (see
// TestSocketDrainedNotCut). Decisions at given instants, on a real socket
// whose peer reads nothing while the <r/>'s point is read, then everything.
func TestQueuedAtWriteFoundInABound(t *testing.T) {
	raw, drain := queuedSocket(t)
	const ack = int64(time.Second)
	c, t0 := awaiting(t, raw)
	c.noteRLocked() // the <r/> written: the kernel holds bytes of ours
	c.markLocked(t0)
	drain()
	look := looker(t, c, t0)
	look(ack/2, true) // the first look: all acknowledged, none pending
	look(ack-1, true)
	look(ack, false) // a bound after the write, unanswered
}

// queuedSocket returns a loopback socket whose kernel holds bytes of ours
// that its peer does not read, and drain, which has the peer read them all
// and waits until the kernel holds none.
func queuedSocket(t *testing.T) (raw syscall.RawConn, drain func()) {
	near, far := loopbackPair(t, 4096)
	const size = 256 << 10
	wrote := make(chan error, 1)
	go func() {
		_, err := near.Write(make([]byte, size))
		wrote <- err
	}()
	raw = socketOf(near)
	waitQueue(t, raw, true)
	return raw, func() {
		t.Helper()
		if _, err := io.ReadFull(far, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		waitQueue(t, raw, false)
	}
}

// looker returns a check that c, awaiting an answer since t0, is alive
// (or not) at a look at t0+at.
func looker(t *testing.T, c *conn, t0 int64) func(at int64, alive bool) {
	return func(at int64, alive bool) {
		t.Helper()
		c.fatal = nil
		if got := c.progressLocked(t0 + at); got != alive {
			t.Fatalf("look at %v: alive %v, want %v (%v)", time.Duration(at), got, alive, c.fatal)
		}
	}
}
