// Package procio reads a process's system call counts from Linux's
// /proc/PID/io, for the benchmark programs: on loopback most of a
// message's CPU outside the server goes to such calls, so what one sender
// makes more per message tells where its extra CPU goes.
package procio

import (
	"os"
	"strconv"
	"strings"
)

// Syscalls returns the read-family and write-family system calls (syscr
// and syscw: read, recvfrom, readv ... and write, sendto, pwrite64 ...,
// every thread's) that the process pid ("self" for this one) made so far;
// zeros where /proc/PID/io cannot be read.
func Syscalls(pid string) (reads, writes int64) {
	b, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return 0, 0
	}
	return Parse(string(b))
}

// Parse reads syscr and syscw from the text of /proc/PID/io.
func Parse(s string) (reads, writes int64) {
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
