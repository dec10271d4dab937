package main

import (
	"fmt"
	"strconv"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
)

// ioUse counts the read-family and write-family system calls (syscr and
// syscw of /proc/PID/io: read, readv, recvmsg ... and write, pwrite64,
// sendmsg ...) of this process and of the load client. On loopback most of
// a message's CPU outside the server goes to such calls: what one side
// makes more per message tells where its extra CPU goes.
type ioUse struct{ selfR, selfW, loadR, loadW int64 }

func (a ioUse) sub(b ioUse) ioUse {
	return ioUse{a.selfR - b.selfR, a.selfW - b.selfW, a.loadR - b.loadR, a.loadW - b.loadW}
}

func (a ioUse) add(b ioUse) ioUse {
	return ioUse{a.selfR + b.selfR, a.selfW + b.selfW, a.loadR + b.loadR, a.loadW + b.loadW}
}

// perMsg formats the calls per message of n messages.
func (a ioUse) perMsg(n int) string {
	f := func(v int64) string { return strconv.FormatFloat(float64(v)/float64(n), 'f', 2, 64) }
	s := fmt.Sprintf("self %s / %s", f(a.selfR), f(a.selfW))
	if a.loadR != 0 || a.loadW != 0 {
		s += fmt.Sprintf(" (load client %s / %s)", f(a.loadR), f(a.loadW))
	}
	return s
}

// ioNow reads the counts of this process and of the load client (pid 0:
// none); zeros where /proc/PID/io cannot be read.
func ioNow(load int) ioUse {
	var u ioUse
	u.selfR, u.selfW = procio.Syscalls("self")
	if load != 0 {
		u.loadR, u.loadW = procio.Syscalls(strconv.Itoa(load))
	}
	return u
}
