package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
)

// offlineOrder returns the senders of round r (from 1) in the order they
// run. Round pairs take the list rotated by one more place each pair, the
// second round of a pair in reverse: with two senders AB, BA, BA, AB …,
// with three all six orders in six rounds, so that over 2n rounds (two or
// three senders) every sender runs first equally often and right after
// each other sender equally often; with four or more, senders not next to
// each other in the list never run back to back. With a fixed order the same sender always ran
// right after the same other one, on the machine as that one left it (the
// page cache, the load it drew).
func offlineOrder(senders []string, round int) []string {
	n := len(senders)
	if n == 0 {
		return nil
	}
	r := max(round, 1) - 1
	k := (r / 2) % n
	o := append(append([]string(nil), senders[k:]...), senders[:k]...)
	if r%2 == 1 {
		slices.Reverse(o)
	}
	return o
}

// dirtyKiB returns Dirty plus Writeback of /proc/meminfo, in KiB (0 if
// unreadable): the machine's data waiting for writeback when a run starts.
func dirtyKiB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	return parseDirty(string(b))
}

// parseDirty returns Dirty plus Writeback, in KiB, from the text of
// /proc/meminfo.
func parseDirty(meminfo string) int64 {
	var n int64
	for line := range strings.Lines(meminfo) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "Dirty" && k != "Writeback") {
			continue
		}
		if f := strings.Fields(v); len(f) > 0 {
			x, _ := strconv.ParseInt(f[0], 10, 64)
			n += x
		}
	}
	return n
}

// diskWrittenBytes returns the bytes written so far to the machine's
// physical disks (/proc/diskstats), 0 if unreadable.
func diskWrittenBytes() int64 {
	b, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return 0
	}
	return parseDiskWritten(string(b), physicalDisk)
}

// parseDiskWritten sums the sectors written (512 bytes each, field 10 of
// /proc/diskstats) of the devices that disk accepts.
func parseDiskWritten(diskstats string, disk func(name string) bool) int64 {
	var sectors int64
	for line := range strings.Lines(diskstats) {
		f := strings.Fields(line)
		if len(f) < 10 || !disk(f[2]) {
			continue
		}
		n, _ := strconv.ParseInt(f[9], 10, 64)
		sectors += n
	}
	return sectors * 512
}

// physicalDisk reports whether the block device name is a whole physical
// disk: listed in /sys/block (not a partition), not virtual (loop, ram,
// zram, device-mapper and md devices live under /sys/devices/virtual) and
// not stacked on other devices (its writes would count twice).
func physicalDisk(name string) bool {
	dir := "/sys/block/" + strings.ReplaceAll(name, "/", "!")
	target, err := os.Readlink(dir)
	if err != nil || strings.Contains(target, "/virtual/") {
		return false
	}
	slaves, _ := os.ReadDir(dir + "/slaves")
	return len(slaves) == 0
}
