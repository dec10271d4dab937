//go:build linux

package login

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setUserTimeout is the net.Dialer's Control: it sets TCP_USER_TIMEOUT
// (see userTimeout) on the socket before it connects.
func setUserTimeout(_, _ string, c syscall.RawConn) error {
	// Best effort: a kernel without the option (ENOPROTOOPT, EINVAL)
	// still connects, without it.
	return c.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
	})
}
