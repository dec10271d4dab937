//go:build !linux

package sm

import "net"

// kernelBoundsWrites reports whether the kernel ends a write stuck on c;
// never here: TCP_USER_TIMEOUT is Linux's, and the State bounds such a
// write itself (see "Dead connections").
func kernelBoundsWrites(net.Conn) bool { return false }
