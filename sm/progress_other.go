//go:build !linux

package sm

import (
	"net"
	"syscall"
)

// socketOf returns nil: the progress check reads Linux's TCP_INFO, and
// elsewhere the write bound alone bounds a request that cannot get out.
func socketOf(net.Conn) syscall.RawConn { return nil }

func sendProgress(syscall.RawConn) (acked, queued uint64, ok bool) { return 0, 0, false }
