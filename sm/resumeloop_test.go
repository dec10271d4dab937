package sm

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// lostAfterAck runs a connection on which the server acknowledged a
// message m0, and loses it: the next connection resumes the stream (in a
// synctest bubble).
func lostAfterAck(t *testing.T, cfg Config) (*fakeServer, *recorder, *State) {
	t.Helper()
	srv := newFakeServer(t)
	rec := newRecorder()
	st := New(rec.config(cfg))
	c := mustDial(t, srv, st, nil)
	synctest.Wait()
	sendMsg(t, st, c.sess, "m0")
	if ev := rec.next(t); ev != "acked:m0" {
		t.Fatalf("got %s", ev)
	}
	c.drop()
	return srv, rec, st
}

// TestFrozenAfterResumedFallsBack: a server that answers <resumed/> and
// then takes no byte of ours. The resumed connection dies without an <a/>,
// which is a failed resumption whether or not our <r/> got out, so the
// next connection starts a new session instead of resuming the same stream
// for ever (a rule that excused a connection whose <r/> was stuck behind a
// blocked write resumed it on every connection).
func TestFrozenAfterResumedFallsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, _, st := lostAfterAck(t, Config{AckTimeout: 2 * time.Second, IdleProbe: 10 * time.Second})
		for i := range 2 {
			c := mustDial(t, srv, st, nil)
			if !st.Resumed() {
				c.close()
				return
			}
			synctest.Wait()
			c.sc.conn.freeze()
			// A write the frozen server never takes: the requester's <r/>
			// waits behind it.
			if _, err := c.conn.Write([]byte(" ")); err != nil {
				t.Fatal(err)
			}
			if err := c.waitServed(); !errors.Is(err, ErrAckTimeout) {
				t.Fatalf("connection %d: Serve: %v, want ErrAckTimeout", i+2, err)
			}
		}
		t.Fatalf("two resumed connections in a row died with nothing taken by the server, and a third resumed again (resumable %v)", st.Info().Resumable)
	})
}

// failingLink is the client's end of a link that fails at once when cut:
// reads with readErr, writes with writeErr (the kernel's ETIMEDOUT of
// TCP_USER_TIMEOUT reaches the blocked write, and the read sees the end
// of the input).
type failingLink struct {
	net.Conn
	mu                sync.Mutex
	readErr, writeErr error
}

func (f *failingLink) cut(readErr, writeErr error) {
	f.mu.Lock()
	f.readErr, f.writeErr = readErr, writeErr
	f.mu.Unlock()
	f.Conn.SetDeadline(time.Unix(1, 0))
}

func (f *failingLink) fail(err error, cutErr *error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil && *cutErr != nil {
		return *cutErr
	}
	return err
}

func (f *failingLink) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	return n, f.fail(err, &f.readErr)
}

func (f *failingLink) Write(p []byte) (int, error) {
	n, err := f.Conn.Write(p)
	return n, f.fail(err, &f.writeErr)
}

// TestStuckAfterResumedFallsBack: a resumed connection whose server takes
// no byte of ours any more, so that our <r/> cannot get out, ends before
// the write bound when the kernel gives up on it (TCP_USER_TIMEOUT). If
// the request had waited longer than the ack bound and nothing was
// acknowledged on the connection, that is a failed resumption (the next
// connection starts a new session), as a death by the ack bound is; a
// connection cut sooner, or after an <a/>, is an ordinary loss (the
// stream stays resumable).
func TestStuckAfterResumedFallsBack(t *testing.T) {
	timedOut := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ETIMEDOUT)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tc := range []struct {
		name              string
		acked             bool
		after             time.Duration // from the stuck request to the end
		readErr, writeErr error
		resumable         bool
	}{
		{"kernel timeout", false, DefaultAckTimeout + time.Second, io.EOF, timedOut, false},
		{"kernel timeout after an ack", true, DefaultAckTimeout + time.Second, io.EOF, timedOut, true},
		// As the xmpptrack client's connection reports it: after a failed
		// read, writes fail without reaching the socket.
		{"stuck past the ack bound, then lost", false, DefaultAckTimeout + time.Second, io.EOF, net.ErrClosed, false},
		{"reset within the ack bound", false, time.Second, reset, reset, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv, rec, st := lostAfterAck(t, Config{})
				var link *failingLink
				srv.clientWrap = func(c net.Conn) net.Conn {
					link = &failingLink{Conn: c}
					return link
				}
				c := mustDial(t, srv, st, nil)
				if !st.Resumed() {
					t.Fatal("not resumed")
				}
				if tc.acked {
					sendMsg(t, st, c.sess, "m1")
					if ev := rec.next(t); ev != "acked:m1" {
						t.Fatalf("got %s", ev)
					}
				}
				synctest.Wait() // the server waits in a read, which takes the next write
				c.sc.conn.freeze()
				sendMsg(t, st, c.sess, "m2") // its <r/> cannot get out
				synctest.Wait()
				time.Sleep(tc.after)
				link.cut(tc.readErr, tc.writeErr)
				err := c.waitServed()
				if r := st.Info().Resumable; r != tc.resumable {
					t.Errorf("resumable %v after the connection ended (%v), want %v", r, err, tc.resumable)
				}
			})
		})
	}
}
