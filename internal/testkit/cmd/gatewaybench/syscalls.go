package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
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
	u.selfR, u.selfW = readIO("self")
	if load != 0 {
		u.loadR, u.loadW = readIO(strconv.Itoa(load))
	}
	return u
}

func readIO(pid string) (reads, writes int64) {
	b, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return 0, 0
	}
	return parseIO(string(b))
}

// parseIO reads syscr and syscw from the text of /proc/PID/io.
func parseIO(s string) (reads, writes int64) {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}
