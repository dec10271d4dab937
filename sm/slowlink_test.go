package sm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Regression tests from the review of 69dc363, which bounded writes that
// nothing had counted yet (a probe AckTimeout after Reserve, and a bound
// from the start of each re-send): a slow but working link was then cut
// in the middle of a large stanza. They run in real time: the requester
// would wait for mellium's output lock, on which synctest does not
// advance.

// slowConn is the server's end of a slow link: once free bytes were read,
// it reads chunk bytes per pause on average (see pacer). Bytes keep
// flowing; the server is alive.
type slowConn struct {
	net.Conn
	mu    sync.Mutex
	free  int
	chunk int
	pause time.Duration
	pace  pacer // the reader's alone
}

func (s *slowConn) Read(p []byte) (int, error) {
	s.mu.Lock()
	slow := s.free <= 0
	s.mu.Unlock()
	if slow {
		p = p[:min(len(p), s.pace.take(s.chunk, s.pause))]
	}
	n, err := s.Conn.Read(p)
	s.mu.Lock()
	s.free -= n
	s.mu.Unlock()
	return n, err
}

// pacer paces the reads of a slow link by the clock, not by its pauses:
// a read is let through a pause after the last one was due, and one that
// wakes up late (a loaded machine) takes the chunks due meanwhile too, up
// to maxBurst of them. The link's rate then holds whatever the scheduler
// does, as a real link's would: counting pauses alone, a machine that
// wakes the reader up late stretched a write of 1.3 s past the write bound
// (4.8 s) and the test took the cut for a bug (TestProbeDuringSlowWrite's
// flake under load). The burst cap keeps an idle spell from banking time.
type pacer struct {
	next time.Time // when the next chunk is due; zero: not started
}

// maxBurst is the most chunks a late read takes at once.
const maxBurst = 16

// take waits for the next chunk's turn and returns how many bytes the
// read may take: chunk, times the chunks that came due.
func (pc *pacer) take(chunk int, pause time.Duration) int {
	now := time.Now()
	if pc.next.IsZero() || now.Sub(pc.next) > maxBurst*pause {
		pc.next = now // started, or back from an idle spell
	}
	pc.next = pc.next.Add(pause)
	if d := time.Until(pc.next); d > 0 {
		time.Sleep(d)
	}
	due := 1 + int(time.Since(pc.next)/pause)
	due = min(due, maxBurst)
	pc.next = pc.next.Add(time.Duration(due-1) * pause)
	return due * chunk
}

const (
	slowAckTimeout = 200 * time.Millisecond
	slowBody       = 64 << 10 // read 1 KiB per 20 ms: about 1.3 s, six bounds
)

func slowLink(c net.Conn) net.Conn {
	return &slowConn{Conn: c, free: 4096, chunk: 1024, pause: 20 * time.Millisecond}
}

func bigMsg(id string) string {
	return fmt.Sprintf(`<message xmlns='jabber:client' to='peer@example.org' id='%s' type='chat'><body>%s</body></message>`, id, strings.Repeat("x", slowBody))
}

// enabledVia dials until a connection gets <enabled/> (a loaded machine
// may miss the bound of <enable/>: that connection is dead, and the next
// one is tried).
func enabledVia(t *testing.T, srv *fakeServer, cfg Config, wrap func(net.Conn) net.Conn) (st *State, c *client) {
	t.Helper()
	retry(t, 20, notEnabled, func() bool {
		st = New(cfg)
		var err error
		if c, err = dialVia(t, srv, st, nil, wrap); err != nil {
			return false
		}
		if st.WaitEnabled(t.Context()) == nil {
			return true
		}
		c.waitServed()
		return false
	})
	return st, c
}

// retry runs attempt until it reports success, at most n times, for the
// tests that run in real time and whose attempt a loaded machine can
// void; then it fails the test with what fail says.
func retry(t *testing.T, n int, fail func() string, attempt func() bool) {
	t.Helper()
	for range n {
		if attempt() {
			return
		}
	}
	t.Fatal(fail())
}

// notEnabled is retry's failure for attempts voided by a missed bound of
// <enable/>.
func notEnabled() string { return "20 connections were taken for dead before <enabled/>" }

// TestSlowWriteAlive: a large stanza written after an idle spell over a
// slow link, bytes flowing all along, is acknowledged: no bound runs
// while it is being written.
func TestSlowWriteAlive(t *testing.T) {
	srv := newFakeServer(t)
	rec := newRecorder()
	st, c := enabledVia(t, srv, rec.config(Config{AckTimeout: slowAckTimeout, IdleProbe: time.Hour}), slowLink)
	sendBigAcked(t, st, c, rec)
	c.close()
}

// sendBigAcked writes bigMsg("big") and waits for its ack, failing if the
// connection was cut mid-write.
func sendBigAcked(t *testing.T, st *State, c *client, rec *recorder) {
	t.Helper()
	r, err := st.Reserve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if err := c.sess.Send(t.Context(), rawReader([]byte(bigMsg("big")))); err != nil {
		t.Fatalf("the slow link was taken for dead mid-write: Send: %v; Serve: %v", err, c.waitServed())
	}
	if ev := rec.next(t); ev != "acked:big" {
		t.Fatalf("got %s", ev)
	}
}

// sendBigThenDrop enables a State on srv, writes the large message "big"
// on it (its Reserve slot released when the test ends) and drops the
// connection without closing the stream.
func sendBigThenDrop(t *testing.T, srv *fakeServer, rec *recorder) *State {
	t.Helper()
	st, c := enabledVia(t, srv, rec.config(Config{AckTimeout: slowAckTimeout, IdleProbe: time.Hour}), nil)
	r, err := st.Reserve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Release)
	if err := c.sess.Send(t.Context(), rawReader([]byte(bigMsg("big")))); err != nil {
		t.Fatal(err)
	}
	c.drop()
	return st
}

// TestSlowRetransmitResumes: a resumption over a slow link retransmits a
// large stanza in Start; no bound runs while it is being written (no <a/>
// could restart one: Serve does not run during Start), and the resumption
// stands.
func TestSlowRetransmitResumes(t *testing.T) {
	srv := newFakeServer(t)
	srv.lose = func(id string) bool { return id == "big" }
	rec := newRecorder()
	st := sendBigThenDrop(t, srv, rec)
	srv.mu.Lock()
	srv.lose = nil
	srv.mu.Unlock()
	c, err := dialVia(t, srv, st, nil, slowLink)
	if err != nil {
		t.Fatalf("taken for dead while retransmitting over a slow link: %v; resumable %v", err, st.Info().Resumable)
	}
	if !st.Resumed() {
		t.Fatal("not resumed")
	}
	if ev := rec.next(t); ev != "acked:big" {
		t.Fatalf("got %s", ev)
	}
	c.close()
}

// TestNoProgressNotPolled: a server that lost a stanza answers <r/> with
// an h that does not cover it, so the window stays full and senders wait
// in Pace; such a server is not polled (handleAck: an answer without
// progress does not ask again), however many senders arrive and Reserve.
func TestNoProgressNotPolled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.lose = func(id string) bool { return id == "lost" }
		st := New(Config{AckTimeout: 2 * time.Second, IdleProbe: time.Hour, Window: 1})
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		sendMsg(t, st, c.sess, "lost")
		synctest.Wait()
		_, rs0, _, _ := srv.snapshot()
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				if r, err := st.Reserve(ctx); err == nil {
					if slot, err := st.Pace(ctx); err == nil {
						slot.Release()
					}
					r.Release()
				}
			})
			time.Sleep(10 * time.Second)
			synctest.Wait()
		}
		if _, rs, _, _ := srv.snapshot(); rs != rs0 {
			t.Errorf("%d more <r/> to a server that makes no progress", rs-rs0)
		}
		cancel()
		wg.Wait()
		c.close()
	})
}

// TestSlowResendAlive: after a failed resumption, the requester re-sends
// a large message of the lost stream over a slow link once <enabled/>
// came; no bound runs while it is being written (69dc363 bounded the
// requester's own re-sends from their start), and it is acknowledged. A
// loaded machine may miss the bound of <enable/> (as in enabledVia): that
// connection is dead before the re-send, and the whole scenario is tried
// again.
func TestSlowResendAlive(t *testing.T) {
	retry(t, 20, notEnabled, func() bool { return slowResendAlive(t) })
}

// slowResendAlive is one attempt of TestSlowResendAlive; false if the
// connection that failed to resume was taken for dead before <enabled/>.
func slowResendAlive(t *testing.T) bool {
	srv := newFakeServer(t)
	holdAcks(srv)
	rec := newRecorder()
	st := sendBigThenDrop(t, srv, rec)
	srv.mu.Lock()
	srv.holdR = false
	srv.resumeReply = func(uint32) string {
		return `<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`
	}
	srv.mu.Unlock()
	c, err := dialVia(t, srv, st, nil, slowLink)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitEnabled(t.Context()); err != nil {
		if serr := c.waitServed(); !errors.Is(serr, ErrAckTimeout) {
			t.Fatalf("WaitEnabled: %v; Serve: %v", err, serr)
		}
		return false
	}
	want := []string{"resent:big", "acked:big"}
	if evs := waitEvents(t, rec, 2); !slices.Equal(evs, want) {
		t.Fatalf("got %v, want %v", evs, want)
	}
	c.close()
	return true
}

// TestProbeDuringSlowWrite: the idle probe's <r/> is booked while a large
// stanza is being written over a slow link, bytes flowing all along, and
// waits for mellium's output behind it. Its ack bound starts only once it
// got out: the write outlasts the bound (about 1.3 s against at most
// 0.4 s) and the connection stands, the stanza is acknowledged, and on a
// connection that has just resumed the stream (nothing acknowledged on it
// yet) the resumption stands too: no new session, nothing sent twice. On
// a State that armed the bound at the booking, the write was cut, and
// the resumption taken for failed.
func TestProbeDuringSlowWrite(t *testing.T) {
	for _, resumed := range []bool{false, true} {
		t.Run(map[bool]string{false: "fresh", true: "resumed"}[resumed], func(t *testing.T) {
			srv := newFakeServer(t)
			rec := newRecorder()
			cfg := rec.config(Config{AckTimeout: slowAckTimeout, IdleProbe: 50 * time.Millisecond})
			var st *State
			var c *client
			if resumed {
				st, c = enabledVia(t, srv, cfg, nil)
				sendMsg(t, st, c.sess, "m0")
				if ev := rec.next(t); ev != "acked:m0" {
					t.Fatalf("got %s", ev)
				}
				c.drop()
				var err error
				if c, err = dialVia(t, srv, st, nil, slowLink); err != nil {
					t.Fatal(err)
				}
				if !st.Resumed() {
					t.Fatal("not resumed")
				}
			} else {
				st, c = enabledVia(t, srv, cfg, slowLink)
			}
			sendBigAcked(t, st, c, rec)
			select {
			case <-c.served:
				t.Fatalf("the connection ended after the slow write: %v", c.serveEr)
			default:
			}
			if info := st.Info(); resumed && (!info.Resumed || !info.Resumable) {
				t.Fatalf("the resumption did not stand: resumed %v, resumable %v", info.Resumed, info.Resumable)
			}
			if n := strings.Count(strings.Join(srv.ids(), " "), "big"); n != 1 {
				t.Errorf("the server got big %d times", n)
			}
			c.close()
		})
	}
}
