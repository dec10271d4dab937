package main

import (
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
)

// TestOfflineOrder: every sender of the bulk-to-offline comparison runs
// first, and right after each other sender, equally often (a fixed order
// always ran plain mellium second, right after the same sender).
func TestOfflineOrder(t *testing.T) {
	s := []string{"xmpptrack", "plain"}
	var got []string
	for r := 1; r <= 4; r++ {
		got = append(got, strings.Join(offlineOrder(s, r), ","))
	}
	if want := "xmpptrack,plain plain,xmpptrack plain,xmpptrack xmpptrack,plain"; strings.Join(got, " ") != want {
		t.Errorf("orders of rounds 1-4: %q, want %q", got, want)
	}
	if s[0] != "xmpptrack" {
		t.Errorf("offlineOrder changed its argument: %v", s)
	}
	three := []string{"a", "b", "c"}
	first, after, seen := map[string]int{}, map[string]int{}, map[string]bool{}
	for r := 1; r <= 6; r++ {
		o := offlineOrder(three, r)
		seen[strings.Join(o, "")] = true
		first[o[0]]++
		for i := 1; i < len(o); i++ {
			after[o[i-1]+o[i]]++
		}
	}
	if len(seen) != 6 {
		t.Errorf("six rounds of three senders ran %d distinct orders, want all 6: %v", len(seen), seen)
	}
	for _, x := range three {
		if first[x] != 2 {
			t.Errorf("%s ran first %d times in 6 rounds, want 2 (%v)", x, first[x], first)
		}
		for _, y := range three {
			if x != y && after[x+y] != 2 {
				t.Errorf("%s ran right before %s %d times in 6 rounds, want 2 (%v)", x, y, after[x+y], after)
			}
		}
	}
	if o := offlineOrder(three, 0); strings.Join(o, "") != "abc" {
		t.Errorf("round 0: %v, want the first round's order", o)
	}
}

func TestParseDirty(t *testing.T) {
	m := "MemTotal:       8000000 kB\nDirty:            326284 kB\nWriteback:           256 kB\nWritebackTmp:        9 kB\n"
	if got := parseDirty(m); got != 326540 {
		t.Errorf("parseDirty = %d, want 326540", got)
	}
	if got := parseDirty("garbage"); got != 0 {
		t.Errorf("parseDirty(garbage) = %d", got)
	}
}

func TestParseDiskWritten(t *testing.T) {
	// Fields: major minor name, then reads, merged, sectors read, ms,
	// writes, merged, sectors written (the tenth field), ms …
	stats := `   7       0 loop0 10 0 20 0 5 0 100 0 0 0 0
 252       0 vda 2539480 1200 73490442 900 14834066 3300 1475942752 2266096 0 25360399 0
 252       1 vda1 10 0 20 0 5 0 300 0 0 0 0
 251       0 zram0 1 0 2 0 3 0 400 0 0 0 0
 short line
`
	disk := func(name string) bool { return name == "vda" }
	if got, want := parseDiskWritten(stats, disk), int64(1475942752)*512; got != want {
		t.Errorf("parseDiskWritten = %d, want %d (vda's sectors written only)", got, want)
	}
}

// TestReportOffline: the report shows each run's ratio to plain mellium,
// Prosody's share of the run and its file and disk traffic per message.
func TestReportOffline(t *testing.T) {
	runs := []offlineRun{
		{sender: "xmpptrack", round: 1, res: result{ToServer: 10}, serverCPU: 8, wall: 12.5,
			serverIO: procio.Counters{RChar: 654300, ReadBytes: 4096 * 100, WriteBytes: 262100}, diskW: 5e6, dirty: 3 << 10},
		{sender: "plain", round: 1, res: result{ToServer: 20}, serverCPU: 9, wall: 22.5},
	}
	var b strings.Builder
	reportOffline(&b, 100, runs)
	out := b.String()
	for _, want := range []string{
		"round 1 xmpptrack", "0.50× plain", "server CPU 8.0 s (64% of the run)", "read calls 6543 B", "storage reads 4096 B",
		"page cache dirtied 2621 B", "physical disks wrote 5.0 MB", "3 MiB dirty at the start", "round 1 plain", "(40% of the run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
