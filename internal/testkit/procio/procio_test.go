package procio

import (
	"runtime"
	"testing"
	"time"
)

func TestParseCounters(t *testing.T) {
	c := ParseCounters("rchar: 1915\nwchar: 12\nsyscr: 7\nsyscw: 3\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n")
	want := Counters{RChar: 1915, WChar: 12, SyscR: 7, SyscW: 3, ReadBytes: 4096, WriteBytes: 8192}
	if g := ParseCounters("garbage\nsyscr: x\nsyscw: 3\n"); g != (Counters{SyscW: 3}) {
		t.Errorf("unparsable text: %+v, want only SyscW 3", g)
	}
	if c != want {
		t.Errorf("ParseCounters = %+v, want %+v", c, want)
	}
	if d := c.Sub(Counters{RChar: 15, SyscW: 1, WriteBytes: 192}); d != (Counters{RChar: 1900, WChar: 12, SyscR: 7, SyscW: 2, ReadBytes: 4096, WriteBytes: 8000}) {
		t.Errorf("Sub = %+v", d)
	}
	if a := c.Add(c); a != (Counters{RChar: 3830, WChar: 24, SyscR: 14, SyscW: 6, ReadBytes: 8192, WriteBytes: 16384}) {
		t.Errorf("Add = %+v", a)
	}
}

// TestSelfCPU: the process's CPU time is read (not 0) and grows with work.
func TestSelfCPU(t *testing.T) {
	c0 := SelfCPU()
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for SelfCPU() <= c0 {
		for i := range 1 << 20 {
			x += i
		}
		if time.Now().After(deadline) {
			t.Fatalf("SelfCPU stayed at %v through 10 s of work (%d)", c0, x)
		}
	}
}

// TestSelfStatus: the resident set and its peak read from /proc/self/status
// in bytes (Linux; elsewhere there is no such file and both read 0).
func TestSelfStatus(t *testing.T) {
	rss, hwm := SelfStatus("VmRSS:"), SelfStatus("VmHWM:")
	if runtime.GOOS != "linux" {
		if rss != 0 || hwm != 0 {
			t.Errorf("VmRSS %d, VmHWM %d without /proc; want 0, 0", rss, hwm)
		}
		return
	}
	if rss < 1<<20 || hwm < rss || rss%1024 != 0 {
		t.Errorf("VmRSS %d B, VmHWM %d B; want at least 1 MiB, the peak at least the resident set, whole kB", rss, hwm)
	}
	if v := SelfStatus("NoSuchField:"); v != 0 {
		t.Errorf("an unknown field read %d, want 0", v)
	}
}
