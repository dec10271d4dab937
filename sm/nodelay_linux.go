//go:build linux

package sm

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setNoDelay sets the socket's TCP_NODELAY to on; turning it on sends
// what Nagle's algorithm held. It reports whether the option was set.
func setNoDelay(raw syscall.RawConn, on bool) bool {
	v := 0
	if on {
		v = 1
	}
	var err error
	if raw.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, v)
	}) != nil || err != nil {
		return false
	}
	return true
}
