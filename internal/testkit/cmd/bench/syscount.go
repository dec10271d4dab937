package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverSyscalls are the server's system calls that -server-syscalls
// counts per run: what the server pays per read and write of its
// sessions' sockets, and per wake-up.
var serverSyscalls = []string{"recvfrom", "read", "writev", "sendto", "epoll_wait", "epoll_pwait", "futex"}

// syscallCount counts system calls of the server's processes during one
// run with perf's tracepoints (perf stat -p), which cost the server far
// less than strace would, though not nothing: a run counted shows a
// slightly higher server CPU. Nil if perf could not be started.
type syscallCount struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	out    bytes.Buffer
}

// perfStopWait bounds how long stop waits for perf to print its counts
// after SIGINT before it kills perf.
const perfStopWait = 2 * time.Second

// startSyscallCount starts counting the system calls of the server
// process pid and its descendants; nil and why if that fails (no perf):
// the run then reports none.
func startSyscallCount(ctx context.Context, pid int) (*syscallCount, error) {
	var pids []string
	for p := range tree(pid) {
		pids = append(pids, strconv.Itoa(p))
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no process %d", pid)
	}
	args := []string{"stat", "-x", ",", "-p", strings.Join(pids, ",")}
	for _, s := range serverSyscalls {
		args = append(args, "-e", "syscalls:sys_enter_"+s)
	}
	return startCounter(ctx, perfStopWait, "perf", args...)
}

// startCounter starts a counting command that prints its counts on
// standard error when it gets SIGINT; stop kills it if it has not ended
// within wait of that.
func startCounter(ctx context.Context, wait time.Duration, name string, args ...string) (*syscallCount, error) {
	ctx, cancel := context.WithCancel(ctx)
	sc := &syscallCount{cmd: exec.CommandContext(ctx, name, args...), cancel: cancel}
	sc.cmd.Cancel = func() error { return sc.cmd.Process.Signal(syscall.SIGINT) }
	sc.cmd.WaitDelay = wait
	sc.cmd.Stderr = &sc.out // perf stat reports on stderr
	if err := sc.cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	return sc, nil
}

// stop ends the count and returns the calls of each name, or an error
// with what perf said if it counted none (a tracepoint it could not
// open: perf_event_paranoid, no tracefs).
func (sc *syscallCount) stop() (map[string]int64, error) {
	if sc == nil {
		return nil, nil
	}
	sc.cancel()
	return sc.counts()
}

// counts waits for the counter to end and returns what it counted.
func (sc *syscallCount) counts() (map[string]int64, error) {
	err := sc.cmd.Wait()
	m := parsePerfStat(sc.out.String())
	if len(m) > 0 {
		return m, nil
	}
	said := strings.Join(strings.Fields(sc.out.String()), " ")
	if len(said) > 200 {
		said = said[:200] + "…"
	}
	return nil, fmt.Errorf("%s counted nothing (%v): %s", sc.cmd.Path, err, said)
}

// parsePerfStat reads the counts of perf stat -x , output (count, unit,
// event, ...) for the syscalls:sys_enter_ events, by system call name.
// Counts perf could not take ("<not counted>") are left out.
func parsePerfStat(out string) map[string]int64 {
	m := map[string]int64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		name, ok := strings.CutPrefix(f[2], "syscalls:sys_enter_")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			m[name] = n
		}
	}
	return m
}

// syscallLine formats counts per message.
func syscallLine(m map[string]int64, n int) string {
	if len(m) == 0 || n <= 0 {
		return ""
	}
	var names []string
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var s []string
	for _, k := range names {
		s = append(s, fmt.Sprintf("%s %.2f", k, float64(m[k])/float64(n)))
	}
	return ", server system calls per message: " + strings.Join(s, " ")
}
