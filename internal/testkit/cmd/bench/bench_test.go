package main

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// TestMain lets the test binary play the child roles: the program
// re-executes itself (os.Executable) with -role as first argument.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-role") {
		os.Exit(childMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestQuick runs the whole program in -quick mode with few messages
// against Prosody, so that it cannot rot. It checks that every part
// produced a result, never the numbers (benchmarks are not timed tests).
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prosody and child processes")
	}
	if err := testserver.Available(testserver.Prosody); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("prosody is required under CI=true: %v", err)
		}
		t.Skipf("prosody not available: %v", err)
	}
	opts, err := parseOptions([]string{
		// Every role and path once (ceiling: plain without stream
		// management, two sessions), few runs: each child takes about a
		// second under -race.
		"-server", "prosody", "-quick", "-n", "100", "-ceiling-senders", "2",
		"-senders", "xmpptrack,xmpptrack-sqlite,xmpptrack-sqlite-floor,xmpptrack-store-discard,xmpptrack-r2000,plain,plain-sm,aioxmpp,ceiling",
		"-latency-samples", "3", "-pending-n", "300", "-run-timeout", "1m",
		"-offline-n", "200", "-offline-senders", "xmpptrack,plain", "-offline-rounds", "2",
	}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	var out, progress bytes.Buffer
	began := time.Now()
	if err := runBench(t.Context(), opts, &out, &progress); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Logf("ran in %v\n%s", time.Since(began).Round(time.Millisecond), out.String())
	report := out.String()
	// The table's columns are padded to the longest sender's name.
	squeezed := strings.Join(strings.Fields(report), " ")
	for _, want := range []string{
		"prosody| xmpptrack|", "prosody| xmpptrack-sqlite|", "prosody| plain-sm|", "prosody| ceiling (2×)|",
		"xmpptrack / plain-sm", "<r/> per 8 stanzas", "lone message DTS", "pending: 1,000,000 trackers", "while sending: peak heap in use",
		"round 1 xmpptrack", "round 2 plain", "× plain), written in", "page cache dirtied",
		"what the two cores allow a durable store, estimated", "xmpptrack-sqlite / xmpptrack: throughput ratio the cores allow at these costs if both rounds keep equally many busy",
		"prosody| xmpptrack-sqlite-floor|", "xmpptrack-sqlite / xmpptrack-sqlite-floor: throughput ratio the cores allow",
		"xmpptrack-sqlite-floor / xmpptrack-store-discard: throughput ratio the cores allow",
		"prosody| plain|", "server CPU during the workload alone (log-in and log-out left out), ratio",
		"xmpptrack-r2000 (xmpptrack paced, target 2000 msg/s, made ", "with the XMPP server and responder at their cost at the ", "msg/s xmpptrack-r2000 made (target 2000):",
	} {
		if !strings.Contains(squeezed, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !strings.Contains(progress.String(), "xmpptrack  100 msgs") || !strings.Contains(progress.String(), "machine busy") ||
		!strings.Contains(progress.String(), "system calls per message: read") || !strings.Contains(progress.String(), "server per message: read") ||
		!strings.Contains(progress.String(), "during the workload XMPP server CPU") {
		t.Errorf("the rounds' lines lack the machine's busy cores, the system calls, the server's I/O or the watched processes' CPU:\n%s", progress.String())
	}
	if strings.Contains(report, "failure:") {
		t.Errorf("a run failed:\n%s\n%s", report, progress.String())
	}
}

func TestTagCounter(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		r, a   int64
		stanza int64
	}{
		{"empty", nil, 0, 0, 0},
		{"r and a", []string{`<r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='1'/>`}, 1, 1, 0},
		{"stanzas", []string{`<message id='1'><body>x &lt;r/></body><request xmlns='urn:xmpp:receipts'/></message><iq/><presence>`}, 0, 0, 3},
		{"split tags", []string{`<mess`, `age to='x'></message><`, `r`, `/>`}, 1, 0, 1},
		{"end tags and prefixes", []string{`</r><stream:stream><?xml version='1.0'?><rr/><r>`}, 1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c tagCounter
			for _, ch := range tc.chunks {
				c.Write([]byte(ch))
			}
			if c.r.Load() != tc.r || c.a.Load() != tc.a || c.stanzas() != tc.stanza {
				t.Errorf("r %d a %d stanzas %d, want %d %d %d", c.r.Load(), c.a.Load(), c.stanzas(), tc.r, tc.a, tc.stanza)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		v    []float64
		q    float64
		want float64
	}{
		{[]float64{3, 1, 2}, 0.5, 2},
		{[]float64{4, 1, 3, 2}, 0.5, 2.5},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.95, 10},
		{[]float64{5}, 0.95, 5},
	}
	for _, tc := range tests {
		if got := quantile(tc.v, tc.q); got != tc.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", tc.v, tc.q, got, tc.want)
		}
	}
}

// TestPeakMB: a peak resident set that was not read (0, off Linux) prints
// as n/a, not as 0.0 MB.
func TestPeakMB(t *testing.T) {
	if got := peakMB(0); got != "n/a" {
		t.Errorf("peakMB(0) = %q, want n/a", got)
	}
	if got := peakMB(2_000_000); got != "2.0 MB" {
		t.Errorf("peakMB(2e6) = %q, want 2.0 MB", got)
	}
}

// TestCPUBound checks the bound's arithmetic on a round like the quiet
// run of 2026-12-06 20:04: every process 0.164 ms per message in memory,
// 0.283 with PostgreSQL, of which the database 0.072.
func TestCPUBound(t *testing.T) {
	mk := func(cpu, db, server, resp float64) run {
		return run{res: result{N: 1000, CntRecip: 1000, CPU: cpu, DBCPU: db, WatchCPU: []float64{server, resp}}}
	}
	m, d := mk(0.028, 0, 0.104, 0.032), mk(0.059, 0.072, 0.120, 0.032)
	b := cpuBound(m, d, 0.7)
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("ratio", b.ratio, 0.164/0.283)
	near("dbFor", b.dbFor, 0.164/0.7-0.211)
	near("dbForAtRate", b.dbForAtRate, 0.164/0.7-0.059-0.136)
	near("ratioAtRate", b.ratioAtRate, 0.164/(0.059+0.072+0.136))
	d.res.WatchCPU = nil
	if b := cpuBound(m, d, 0.7); !math.IsNaN(b.ratio) {
		t.Errorf("ratio without the watched processes = %v, want NaN", b.ratio)
	}
}
