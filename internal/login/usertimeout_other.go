//go:build !linux

package login

import "syscall"

// setUserTimeout is nil where TCP_USER_TIMEOUT is not set (not Linux).
var setUserTimeout func(network, address string, c syscall.RawConn) error
