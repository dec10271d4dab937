package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
)

// machine describes where the benchmark ran.
type machine struct {
	CPUs      int
	Model     string
	Kernel    string
	Go        string
	Versions  map[string]string // Debian package versions
	LoadStart string
	LoadEnd   string
	// BusyPct is the share of all CPUs busy during the whole run (all
	// processes, from /proc/stat).
	BusyPct float64
}

func describeMachine() *machine {
	m := &machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Versions: map[string]string{}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	for _, pkg := range []string{"prosody", "ejabberd", "python3-aioxmpp"} {
		out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
		if err == nil {
			m.Versions[pkg] = strings.TrimSpace(string(out))
		}
	}
	m.LoadStart = loadavg()
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cpuTicks returns the busy and total jiffies of all CPUs (/proc/stat).
func cpuTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// treeCPU returns the user+system CPU seconds of process pid and all its
// live descendants (a server and, for ejabberd, the Erlang VM that
// ejabberdctl starts), read from /proc/<pid>/stat. It only reads: nothing
// is signalled.
func treeCPU(pid int) float64 {
	var ticks int64
	for _, t := range tree(pid) {
		ticks += t
	}
	return float64(ticks) / clockTicks
}

// treeUsage returns treeCPU and the sum of the /proc/PID/io counters of
// the same processes, from one scan of /proc.
func treeUsage(pid int) (cpu float64, io procio.Counters) {
	var ticks int64
	for p, t := range tree(pid) {
		ticks += t
		io = io.Add(procio.Read(strconv.Itoa(p)))
	}
	return float64(ticks) / clockTicks, io
}

// otherCores returns the cores that processes other than the given ones
// (own: their CPU seconds) kept busy on average over wall seconds since
// the machine's cpuTicks were busy0 and total0.
func otherCores(busy0, total0 int64, wall, own float64) float64 {
	busy1, total1 := cpuTicks()
	if total1 <= total0 || wall <= 0 {
		return 0
	}
	return max(0, float64(busy1-busy0)/clockTicks-own) / wall
}

// tree returns process pid and its live descendants, each with its
// user+system CPU ticks, from /proc/<pid>/stat (nil for pid <= 0).
func tree(pid int) map[int]int64 {
	if pid <= 0 {
		return nil
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	type entry struct {
		ppid  int
		ticks int64
	}
	procs := map[int]entry{}
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// The command name (field 2) may contain spaces: split after ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
		if len(f) < 13 {
			continue
		}
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		ppid, _ := strconv.Atoi(f[1])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		procs[p] = entry{ppid, u + s}
	}
	out := map[int]int64{}
	for p, e := range procs {
		for q, hops := p, 0; q > 1 && hops < 64; q, hops = procs[q].ppid, hops+1 {
			if q == pid {
				out[p] = e.ticks
				break
			}
		}
	}
	return out
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// watchedCPU returns treeCPU of each of pids.
func watchedCPU(pids []int) []float64 {
	var c []float64
	for _, p := range pids {
		c = append(c, treeCPU(p))
	}
	return c
}

// watchedSince returns the CPU each of pids took since watchedCPU gave
// before.
func watchedSince(pids []int, before []float64) []float64 {
	var d []float64
	for i, c := range watchedCPU(pids) {
		d = append(d, c-before[i])
	}
	return d
}
