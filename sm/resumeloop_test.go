package sm

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
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

// kernelTimeout is the client's end of a link on which the kernel gives
// up (TCP_USER_TIMEOUT): once expired, reads and writes fail with
// ETIMEDOUT.
type kernelTimeout struct {
	net.Conn
	expired atomic.Bool
}

func (k *kernelTimeout) expire() {
	k.expired.Store(true)
	k.Conn.SetDeadline(time.Unix(1, 0))
}

func (k *kernelTimeout) err(op string, err error) error {
	if err != nil && k.expired.Load() {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, syscall.ETIMEDOUT)}
	}
	return err
}

func (k *kernelTimeout) Read(p []byte) (int, error) {
	n, err := k.Conn.Read(p)
	return n, k.err("read", err)
}

func (k *kernelTimeout) Write(p []byte) (int, error) {
	n, err := k.Conn.Write(p)
	return n, k.err("write", err)
}

// TestKernelTimeoutAfterResumed: where the kernel bounds stuck writes
// (TCP_USER_TIMEOUT), the State sets no write bound of its own, so a
// resumed connection whose server takes nothing ends with ETIMEDOUT
// rather than ErrAckTimeout. Before any <a/> that is a failed resumption
// too (the next connection starts a new session); after one, an ordinary
// loss (the stream stays resumable).
func TestKernelTimeoutAfterResumed(t *testing.T) {
	for _, acked := range []bool{false, true} {
		t.Run(map[bool]string{false: "before an ack", true: "after an ack"}[acked], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv, rec, st := lostAfterAck(t, Config{})
				var kt *kernelTimeout
				srv.clientWrap = func(c net.Conn) net.Conn {
					kt = &kernelTimeout{Conn: c}
					return kt
				}
				c := mustDial(t, srv, st, nil)
				if !st.Resumed() {
					t.Fatal("not resumed")
				}
				if acked {
					sendMsg(t, st, c.sess, "m1")
					if ev := rec.next(t); ev != "acked:m1" {
						t.Fatalf("got %s", ev)
					}
				}
				synctest.Wait()
				kt.expire()
				if err := c.waitServed(); !errors.Is(err, syscall.ETIMEDOUT) {
					t.Fatalf("Serve: %v, want ETIMEDOUT", err)
				}
				if r := st.Info().Resumable; r != acked {
					t.Errorf("resumable %v after the kernel's timeout, want %v", r, acked)
				}
			})
		})
	}
}
