//go:build linux

package sm

import (
	"net"
	"reflect"
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

var netConnType = reflect.TypeFor[net.Conn]()

// wrapped returns the connection c wraps, nil if none is known: the one
// its NetConn method returns (*tls.Conn), or else its embedded net.Conn
// field. A wrapper's Write must have handed the bytes to the kernel when
// it returns (those on the client's stack do): a wrapper that holds writes
// in user space is told apart only while the socket's send queue is
// empty, and one that buffers while the queue holds other bytes leaves
// its <r/> outside the mark of progressLocked, which may then end a
// working connection.
func wrapped(c net.Conn) net.Conn {
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		return w.NetConn()
	}
	v := reflect.ValueOf(c)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	f, ok := v.Type().FieldByName("Conn")
	if !ok || !f.Anonymous || len(f.Index) != 1 || f.Type != netConnType {
		return nil
	}
	inner, _ := v.FieldByIndex(f.Index).Interface().(net.Conn)
	return inner
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
