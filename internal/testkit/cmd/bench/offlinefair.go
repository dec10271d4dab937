package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// offlineOrder returns the senders of round r (from 1) in the order they
// run: the list rotated by r-1, so that every sender runs first equally
// often (with two senders the order alternates: AB, BA, AB …). With a
// fixed order the same sender always ran right after the other, on the
// machine as the other left it (its files being written back, the page
// cache, the load it drew).
func offlineOrder(senders []string, round int) []string {
	if len(senders) == 0 {
		return nil
	}
	k := (round - 1) % len(senders)
	return append(append([]string(nil), senders[k:]...), senders[:k]...)
}

// settleDisk writes back every dirty page of the machine (sync(2), which
// returns once they are written) and returns the machine's dirty and
// writeback memory before and after it, in KiB: a run then does not pay for
// the writeback of the runs before it (Prosody appends its archive without
// fsync, so a run's files are written back while later runs go on).
func settleDisk() (before, after int64) {
	before = dirtyKiB()
	syscall.Sync()
	return before, dirtyKiB()
}

// dirtyKiB returns Dirty plus Writeback of /proc/meminfo, in KiB (0 if
// unreadable).
func dirtyKiB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var n int64
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "Dirty" && k != "Writeback") {
			continue
		}
		f := strings.Fields(v)
		if len(f) > 0 {
			x, _ := strconv.ParseInt(f[0], 10, 64)
			n += x
		}
	}
	return n
}

// diskWrittenBytes returns the bytes written to the machine's whole disks
// so far (/proc/diskstats, sectors of 512 bytes; partitions, loop and ram
// devices left out), 0 if unreadable.
func diskWrittenBytes() int64 {
	b, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return 0
	}
	var sectors int64
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		name := f[2]
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
			continue
		}
		// A whole disk has /sys/block/<name>; a partition does not.
		if _, err := os.Stat("/sys/block/" + strings.ReplaceAll(name, "/", "!")); err != nil {
			continue
		}
		n, _ := strconv.ParseInt(f[9], 10, 64)
		sectors += n
	}
	return sectors * 512
}
