//go:build linux

package login

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setUserTimeout is the net.Dialer's Control: it sets TCP_USER_TIMEOUT
// (see userTimeout) on the socket before it connects.
func setUserTimeout(_, _ string, c syscall.RawConn) error {
	// Best effort, whatever setsockopt answers: the option only bounds a
	// stuck write sooner than the kernel's retransmission limit, so a
	// socket that refuses it (a kernel without it: ENOPROTOOPT, EINVAL)
	// still connects, without that bound. An error of Control itself (the
	// socket is gone) ends the dial.
	return c.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
	})
}
