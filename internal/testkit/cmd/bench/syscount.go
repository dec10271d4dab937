package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// serverSyscalls are the server's system calls that -server-syscalls
// counts per run: what the server pays per read and write of its
// sessions' sockets, and per wake-up.
var serverSyscalls = []string{"recvfrom", "read", "writev", "sendto", "epoll_wait", "epoll_pwait", "futex"}

// syscallCount counts system calls of the server's processes during one
// run with perf's tracepoints (perf stat -p), which cost the server far
// less than strace would. Nil if perf could not be started.
type syscallCount struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// startSyscallCount starts counting the system calls of the server
// process pid and its descendants; nil if that fails (no perf, no
// permission): the run then reports none.
func startSyscallCount(pid int) *syscallCount {
	var pids []string
	for p := range tree(pid) {
		pids = append(pids, strconv.Itoa(p))
	}
	if len(pids) == 0 {
		return nil
	}
	args := []string{"stat", "-x", ",", "-p", strings.Join(pids, ",")}
	for _, s := range serverSyscalls {
		args = append(args, "-e", "syscalls:sys_enter_"+s)
	}
	sc := &syscallCount{cmd: exec.Command("perf", args...)}
	sc.cmd.Stderr = &sc.out // perf stat reports on stderr
	if err := sc.cmd.Start(); err != nil {
		return nil
	}
	return sc
}

// stop ends the count and returns the calls of each name.
func (sc *syscallCount) stop() map[string]int64 {
	if sc == nil {
		return nil
	}
	sc.cmd.Process.Signal(syscall.SIGINT)
	sc.cmd.Wait()
	return parsePerfStat(sc.out.String())
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
