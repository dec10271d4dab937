package sm

import (
	"net"
	"syscall"
)

// The time the client spends behind the server's output, which puts off
// the ack bound (see deadlineLocked and "Dead connections").
//
// The server writes its answer to our <r/> behind everything it wrote
// before, so a client working through a backlog more slowly than the
// server wrote it is on its way to the answer, however long that takes. A
// client that has read and handled everything there is is not: stanzas
// that reach it as the server sends them (presence, a room's traffic) say
// only that the server routes them, not that it will answer, and the
// time it then waits for more is no excuse.
//
// So Serve's goroutine is followed through its reads (the inbound tee's
// writes) and the handler's calls. At each read the State looks whether
// bytes from the server still wait unread: in the TCP socket's receive
// queue on Linux (SIOCINQ), or as a connection that tells them
// (unreadConn). If they do, the time until the next read was spent
// behind: the next read could not wait for data. If not, only the time
// until the last element read was handled was (handling what one read
// brought), not the wait for the next read. Where the State cannot tell
// (another system, no socket found), only reads of stanzas are followed,
// each taken as behind: the bound then runs from the last stanza read, as
// before the look (whitespace keepalives and the server's own <r/> say
// nothing of its progress toward our answer).
//
// The look is one ioctl per read while an answer is awaited or a request
// is being written, none otherwise, and none for a sixteenth of the ack
// bound after a look that found nothing unread (reads are then taken as
// leaving nothing: a backlog that starts meanwhile is excused from the
// next look on, at most that much later). Bytes still on their way are not
// seen: a link slower than the server's output brings a backlog no faster
// than the client reads it, and the time the answer waits behind it in the
// server's queue or on the link is not excused. Time a handler blocks
// counts only once it returns, so the bound still ends a connection whose
// reader the application stopped for longer than that.

// unreadConn is a connection that tells how many bytes from its peer wait
// to be read (the tests' in-memory links; a TCP socket is asked directly).
type unreadConn interface {
	// unreadIn reports the bytes waiting; ok is false if it cannot tell.
	unreadIn() (n int, ok bool)
}

// unreadOf returns what tells the bytes waiting under c: the first layer
// that reports them, or else the TCP socket sock (nil: none known); nil if
// neither.
func unreadOf(c net.Conn, sock syscall.RawConn) unreadConn {
	for l, i := c, 0; l != nil && i < 8; l, i = wrapped(l), i+1 {
		if u, ok := l.(unreadConn); ok {
			return u
		}
	}
	if sock != nil {
		return newInqLook(sock) // Linux: the socket's receive queue
	}
	return nil
}

// inTee is the inbound tee: where the State can tell what is unread, it
// notes each read before the scanner counts what it brought (elsewhere
// the scanner notes each stanza read, see inSink).
type inTee conn

func (t *inTee) Write(p []byte) (int, error) {
	c := (*conn)(t)
	c.st.mu.Lock()
	if c.unread != nil {
		c.readLocked(timeNow())
	}
	c.st.mu.Unlock()
	return c.in.Write(p)
}

// startReadsLocked starts following the reads once Start found what
// tells the bytes unread (c.unread): until the next read the client is
// taken as behind only where nothing tells.
func (c *conn) startReadsLocked(now int64) {
	c.inChk, c.inBehind = now, c.unread == nil
}

// readLocked notes a read from the server at now: the time since inChk
// was spent behind if bytes waited unread at the last read, or if the
// handler was busy with an element (reading the rest of it); and it looks
// whether bytes wait now, if that can matter (an answer awaited, a
// request being written).
func (c *conn) readLocked(now int64) {
	if c.inBehind || c.handling.Load() {
		c.inEx += now - c.inChk
	}
	c.inChk, c.inBehind = now, c.behindLocked(now)
}

// doneHandling notes that the handler returned from an element: if the last
// read left nothing unread, the time since it (or since the last element
// handled) was spent handling what it brought, and counts; if it left
// bytes unread, the next read counts it all.
func (c *conn) doneHandling() {
	now := timeNow()
	c.st.mu.Lock()
	c.handling.Store(false)
	if !c.inBehind {
		c.inEx += now - c.inChk
		c.inChk = now
	}
	c.st.mu.Unlock()
}

// behindLocked reports whether bytes from the server wait unread at now:
// true where the State cannot tell; false while no answer is awaited and
// no request is being written (the look is skipped: a wait counts only
// from its start, see exAtLocked), and within a sixteenth of the ack
// bound after a look that found none.
func (c *conn) behindLocked(now int64) bool {
	if c.unread == nil {
		return true
	}
	if c.sinceLocked() == 0 && c.bookAt == 0 || c.noneAt != 0 && now-c.noneAt < c.st.ackBoundLocked()/16 {
		return false
	}
	n, ok := c.unread.unreadIn()
	if !ok {
		c.unread = nil // the socket is gone, or cannot tell: as elsewhere
		return true
	}
	if c.noneAt = 0; n == 0 {
		c.noneAt = now
	}
	return n > 0
}

// exAtLocked is the time spent behind up to now, the time since inChk
// included if it counts so far: a wait that starts now notes it, and what
// the wait excuses is what inEx grew by since (excusedLocked).
func (c *conn) exAtLocked(now int64) int64 {
	if c.inBehind || c.handling.Load() {
		return c.inEx + now - c.inChk
	}
	return c.inEx
}

// excusedLocked is the time spent behind since the instant whose
// exAtLocked was ref, up to inChk.
func (c *conn) excusedLocked(ref int64) int64 {
	return max(0, c.inEx-ref)
}
