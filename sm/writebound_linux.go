//go:build linux

package sm

import (
	"net"
	"reflect"
	"syscall"

	"golang.org/x/sys/unix"
)

// kernelBoundsWrites reports whether the kernel ends a write stuck on c:
// c is, or wraps, a TCP socket with TCP_USER_TIMEOUT set, as the
// xmpptrack client's dialer sets it.
func kernelBoundsWrites(c net.Conn) bool {
	for range 8 { // a few layers of wrapping at most
		if sc, ok := c.(syscall.Conn); ok {
			raw, err := sc.SyscallConn()
			if err != nil {
				return false
			}
			v := 0
			if raw.Control(func(fd uintptr) {
				v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
			}) != nil || err != nil {
				return false
			}
			return v > 0
		}
		if c = wrapped(c); c == nil {
			return false
		}
	}
	return false
}

var netConnType = reflect.TypeFor[net.Conn]()

// wrapped returns the connection c wraps, nil if none is known: the one
// its NetConn method returns (*tls.Conn), or else its embedded net.Conn
// field. The second is how mellium's tee wrapper, which Session.Conn
// returns when the session has tees (as stream management needs), and
// most wrappers hold the connection, without a method to reach it.
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
