//go:build linux

package sm

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketOf returns the TCP socket under c, through *tls.Conn's NetConn
// and wrappers that embed the connection (mellium's tees, the xmpptrack
// client's own), or nil if none is found.
func socketOf(c net.Conn) syscall.RawConn {
	for range 8 { // a few layers of wrapping at most
		if tc, ok := c.(*net.TCPConn); ok {
			raw, err := tc.SyscallConn()
			if err != nil {
				return nil
			}
			return raw
		}
		if c = wrapped(c); c == nil {
			return nil
		}
	}
	return nil
}

// sendProgress reads the socket's count of bytes the peer acknowledged,
// and the bytes of ours the kernel holds not yet acknowledged (sent or
// not); ok is false if it cannot tell (the socket is gone, or a kernel
// older than 4.1 lacks the count).
func sendProgress(raw syscall.RawConn) (acked, queued uint64, ok bool) {
	var info *unix.TCPInfo
	var err, qerr error
	var q int
	// The queue first: an acknowledgement arriving between the two reads
	// then counts in both (the sum overshoots, which only makes a mark
	// later), never in neither (a mark short of what was written).
	if raw.Control(func(fd uintptr) {
		q, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}) != nil || err != nil || qerr != nil || info.Bytes_acked == 0 || q < 0 {
		// Bytes_acked is never 0 on a kernel that counts it: the stream's
		// negotiation was acknowledged.
		return 0, 0, false
	}
	return info.Bytes_acked, uint64(q), true
}

// inqLook reads the socket's receive queue (SIOCINQ): the bytes from the
// peer not read yet. A connection has one, used under the State's lock;
// it keeps its closure, so a look allocates nothing.
type inqLook struct {
	raw  syscall.RawConn
	look func(fd uintptr)
	n    int
	err  error
}

func newInqLook(raw syscall.RawConn) unreadConn {
	l := &inqLook{raw: raw}
	l.look = func(fd uintptr) { l.n, l.err = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }
	return l
}

func (l *inqLook) unreadIn() (int, bool) {
	if l.raw.Control(l.look) != nil || l.err != nil || l.n < 0 {
		return 0, false
	}
	return l.n, true
}
