//go:build !linux

package sm

import "syscall"

// setNoDelay does nothing: socketOf finds no socket outside Linux.
func setNoDelay(syscall.RawConn, bool) bool { return false }
