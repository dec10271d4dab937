package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// Linux for every architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuUse is the CPU time (user and system) used so far by this process, by
// the XMPP server's process tree, by PostgreSQL's, by the load client and
// by the recipient.
type cpuUse struct{ self, server, db, load, recipient time.Duration }

// pidSet names the processes measured; 0 for none.
type pidSet struct{ server, db, load, recipient int }

func (a cpuUse) sub(b cpuUse) cpuUse {
	return cpuUse{a.self - b.self, a.server - b.server, a.db - b.db, a.load - b.load, a.recipient - b.recipient}
}

func (a cpuUse) add(b cpuUse) cpuUse {
	return cpuUse{a.self + b.self, a.server + b.server, a.db + b.db, a.load + b.load, a.recipient + b.recipient}
}

// total is the CPU time of every process measured: what the two cores of a
// run spent, which bounds its throughput when they are saturated.
func (a cpuUse) total() time.Duration {
	return a.self + a.server + a.db + a.load + a.recipient
}

// perMsg formats the CPU time per message of n messages.
func (a cpuUse) perMsg(n int) string {
	s := fmt.Sprintf("self %s + server %s", perMsg(a.self, n), perMsg(a.server, n))
	if a.db != 0 {
		s += fmt.Sprintf(" + PostgreSQL %s", perMsg(a.db, n))
	}
	if a.load != 0 {
		s += fmt.Sprintf(" (load client %s)", perMsg(a.load, n))
	}
	if a.recipient != 0 {
		s += fmt.Sprintf(" (recipient %s)", perMsg(a.recipient, n))
	}
	return s
}

// cpuStart and cpuEnd sample the CPU times at the start and the end of an
// interval. Reading /proc takes this process tens of milliseconds, which
// must not count as the sender's: cpuStart reads this process's own time
// after the scan, cpuEnd before it.
func cpuStart(p pidSet) cpuUse {
	u := others(p)
	u.self = selfCPU()
	return u
}

func cpuEnd(p pidSet) cpuUse {
	self := selfCPU()
	u := others(p)
	u.self = self
	return u
}

func selfCPU() time.Duration { return procio.SelfCPU() }

// others reads the CPU times of the other processes, in one scan of /proc.
func others(p pidSet) cpuUse {
	t := treeCPU(p.server, p.db, p.load, p.recipient)
	return cpuUse{server: t[0], db: t[1], load: t[2], recipient: t[3]}
}

// treeCPU sums the CPU time of each root pid and its descendants
// (ejabberd's VM is a grandchild of the script the harness starts); 0 for
// a root of 0. It reads /proc; elsewhere it returns zeros.
func treeCPU(roots ...int) []time.Duration {
	out := make([]time.Duration, len(roots))
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	parent := map[int]int{}
	ticks := map[int]int64{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15)
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		id, _ := strconv.Atoi(strings.TrimSpace(s[:strings.IndexByte(s, '(')]))
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		parent[id] = pp
		ticks[id] = ut + st
	}
	for id, t := range ticks {
		for p := id; p > 1; p = parent[p] {
			if k := slices.Index(roots, p); k >= 0 {
				out[k] += time.Duration(t) * clockTick
				break
			}
		}
	}
	return out
}
