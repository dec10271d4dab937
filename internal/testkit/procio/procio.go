// Package procio reads a process's I/O counters from Linux's /proc/PID/io,
// for the benchmark programs: on loopback most of a message's CPU outside
// the server goes to system calls, so what one sender makes more per
// message tells where its extra CPU goes, and the bytes a server reads and
// writes per message tell what a session costs it. SelfCPU reads the
// process's own CPU time, for the benchmarks' CPU per message, on Unix
// systems and Windows.
package procio

import (
	"os"
	"strconv"
	"strings"
)

// Counters are the fields of /proc/PID/io (every thread's).
type Counters struct {
	RChar, WChar int64 // bytes passed to read-family and write-family calls (sockets included)
	SyscR, SyscW int64 // read-family (read, recvfrom, readv …) and write-family (write, sendto, pwrite64 …) calls
	// ReadBytes and WriteBytes are what the process caused to be fetched
	// from and sent to the storage layer (page-cache writes count when
	// dirtied, whether or not writeback happens before the file is deleted).
	ReadBytes, WriteBytes int64
}

// Sub returns c minus d, field by field.
func (c Counters) Sub(d Counters) Counters {
	return Counters{c.RChar - d.RChar, c.WChar - d.WChar, c.SyscR - d.SyscR, c.SyscW - d.SyscW,
		c.ReadBytes - d.ReadBytes, c.WriteBytes - d.WriteBytes}
}

// Add returns c plus d, field by field.
func (c Counters) Add(d Counters) Counters {
	return Counters{c.RChar + d.RChar, c.WChar + d.WChar, c.SyscR + d.SyscR, c.SyscW + d.SyscW,
		c.ReadBytes + d.ReadBytes, c.WriteBytes + d.WriteBytes}
}

// Read returns the counters of process pid ("self" for this one); zeros
// where /proc/PID/io cannot be read.
func Read(pid string) Counters {
	b, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return Counters{}
	}
	return ParseCounters(string(b))
}

// Syscalls returns the read-family and write-family system calls (syscr
// and syscw) that the process pid ("self" for this one) made so far;
// zeros where /proc/PID/io cannot be read.
func Syscalls(pid string) (reads, writes int64) {
	c := Read(pid)
	return c.SyscR, c.SyscW
}

// ParseCounters reads the text of /proc/PID/io; fields it cannot read stay
// zero.
func ParseCounters(s string) Counters {
	var c Counters
	fields := map[string]*int64{
		"rchar": &c.RChar, "wchar": &c.WChar, "syscr": &c.SyscR, "syscw": &c.SyscW,
		"read_bytes": &c.ReadBytes, "write_bytes": &c.WriteBytes,
	}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		if p := fields[k]; p != nil {
			*p = n
		}
	}
	return c
}

// SelfStatus returns a field of this process's /proc/self/status given in
// kB (such as "VmRSS:" or "VmHWM:"), in bytes; 0 if it cannot be read.
func SelfStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
