package main

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func TestParsePerfStat(t *testing.T) {
	out := "# started on Mon Dec  7 14:20:00 2026\n\n" +
		"2105,,syscalls:sys_enter_recvfrom,1500000000,100.00,,\n" +
		"<not counted>,,syscalls:sys_enter_sendto,0,100.00,,\n" +
		"10652,,syscalls:sys_enter_writev,1500000000,100.00,,\n" +
		"12,,cycles,1,100.00,,\n"
	got := parsePerfStat(out)
	want := map[string]int64{"recvfrom": 2105, "writev": 10652}
	if !maps.Equal(got, want) {
		t.Errorf("parsePerfStat = %v, want %v", got, want)
	}
	if s := syscallLine(want, 1000); s != ", server system calls per message: recvfrom 2.10 writev 10.65" {
		t.Errorf("syscallLine = %q", s)
	}
}

// TestCounterSaysWhy: a counter that counted nothing (perf unable to open
// its tracepoints, ending at once) returns what it printed.
func TestCounterSaysWhy(t *testing.T) {
	sc, err := startCounter(t.Context(), time.Minute, "sh", "-c", "echo 'event syntax error: no tracefs' >&2; exit 129")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := sc.counts(); err == nil || !strings.Contains(err.Error(), "event syntax error: no tracefs") {
		t.Errorf("counts = %v, %v; want perf's error", m, err)
	}
	if _, err := startCounter(t.Context(), time.Minute, "/nonexistent/perf"); err == nil {
		t.Error("a counter without its program started")
	}
}
