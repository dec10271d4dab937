package testserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errPortTaken reports that the reserved port was taken by another process
// between its reservation and the server's start-up. Launch retries on it.
var errPortTaken = errors.New("testserver: port taken by another process")

// portTakenIf returns err marked as errPortTaken when bindFailed (the
// server's log or output said so), errPortTaken if err is nil then.
func portTakenIf(err error, bindFailed bool) error {
	switch {
	case !bindFailed || errors.Is(err, errPortTaken):
		return err
	case err == nil:
		return errPortTaken
	}
	return fmt.Errorf("%w: %w", errPortTaken, err)
}

// ports remembers the ports this process handed out, so that two servers
// started at the same time never get the same one, with the lock file that
// keeps other processes using this package from handing them out (nil where
// no lock could be taken).
var ports struct {
	sync.Mutex
	used map[int]*os.File
}

// reservePort returns a free TCP port on 127.0.0.1 for a server to bind.
//
// It picks at random outside the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where neither another program's
// "listen on port 0" nor any outgoing connection's source port can take it
// between this check and the server's bind: under a heavy loopback load
// (thousands of connections from other tests) a port handed out by the
// kernel, free when checked, was taken before Prosody bound it. Other
// processes that use this package skip the port while this one holds it:
// each reservation holds an flock on a file named after the port in
// /tmp/xmpptrack-ports (see lockPort), which the kernel releases if this
// process dies. A port is kept only if 127.0.0.1:port can be bound.
// Without ports outside the ephemeral range (see portRanges) it falls back
// to the kernel's choice (port 0), which Launch logs.
func reservePort() (int, error) {
	var lockErr error
	if ranges, ok := portRanges(); ok {
		total := 0
		for _, r := range ranges {
			total += r[1] - r[0]
		}
		for range 200 {
			port := rand.IntN(total)
			for _, r := range ranges {
				if port < r[1]-r[0] {
					port += r[0]
					break
				}
				port -= r[1] - r[0]
			}
			ok, err := claimPort(port)
			if ok {
				return port, nil
			}
			if err != nil {
				lockErr = err
			}
		}
		if lockErr != nil {
			return 0, fmt.Errorf("testserver: no port could be reserved; last lock error: %w", lockErr)
		}
		return 0, errors.New("testserver: no free port found")
	}
	for range 20 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testserver: reserving a port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ports.Lock()
		if ports.used == nil {
			ports.used = make(map[int]*os.File)
		}
		_, taken := ports.used[port]
		if !taken {
			ports.used[port] = nil
		}
		ports.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, errors.New("testserver: no free port found")
}

// portRanges returns the ranges [lo, hi) the harness picks ports from:
// above 10,000 and below the ephemeral range (at most 12,000 ports), and
// above the ephemeral range. ok is false when there are fewer than 1,000
// such ports or the range cannot be read.
func portRanges() (ranges [][2]int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return nil, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return nil, false
	}
	total := 0
	if from := max(lo-12000, 10000); from < lo {
		ranges = append(ranges, [2]int{from, lo})
		total += lo - from
	}
	if hi+1 < 65536 {
		ranges = append(ranges, [2]int{hi + 1, 65536})
		total += 65535 - hi
	}
	return ranges, total >= 1000
}

// portFallback is what Launch logs when reservePort falls back to the
// kernel's choice, or "".
func portFallback() string {
	if _, ok := portRanges(); ok {
		return ""
	}
	return "testserver: fewer than 1,000 ports outside the ephemeral range (net.ipv4.ip_local_port_range): ports come from the kernel, and another socket may take one before the server binds it"
}

// claimPort takes port for this process if no other reservation holds it
// and 127.0.0.1:port can be bound. err reports a lock that could not be
// used (the port is then not taken).
func claimPort(port int) (bool, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = make(map[int]*os.File)
	}
	if _, taken := ports.used[port]; taken {
		return false, nil
	}
	lock, err := lockPort(port)
	if lock == nil {
		return false, err
	}
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		lock.Close()
		return false, nil
	}
	l.Close()
	ports.used[port] = lock
	return true, nil
}

// portLockDir holds one lock file per port. It is a fixed path, not under
// $TMPDIR, so that processes with different TMPDIRs see each other's locks.
// Its files are never removed: unlinking a lock file while another process
// opens it would let two processes hold "the" lock of one port.
const portLockDir = "/tmp/xmpptrack-ports"

// releasePort lets the port be handed out again, here and elsewhere.
func releasePort(port int) {
	ports.Lock()
	if lock := ports.used[port]; lock != nil {
		lock.Close()
	}
	delete(ports.used, port)
	ports.Unlock()
}

// waitPort returns when addr accepts a TCP connection, when exited is closed
// (the server process ended), when failed (if not nil) reports an error
// before a connection attempt, or when ctx ends. There is no event to wait
// for, so it polls with a short delay.
func waitPort(ctx context.Context, addr string, exited <-chan struct{}, failed func() error) error {
	var d net.Dialer
	delay := 2 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("testserver: waiting for %s: %w", addr, context.Cause(ctx))
		case <-exited:
			return errors.New("testserver: server exited during start-up")
		case <-timer.C:
		}
		if failed != nil {
			if err := failed(); err != nil {
				return err
			}
		}
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		timer.Reset(delay)
		if delay < 20*time.Millisecond {
			delay += delay / 2
		}
	}
}

// listenerOwned reports whether the socket listening on 127.0.0.1:port belongs
// to pid or one of its descendants. Where /proc is unavailable it reports true:
// the check is a guard against port races, not a requirement.
func listenerOwned(port, pid int) bool {
	inodes, ok := listeningInodes(port)
	if !ok {
		return true
	}
	for _, p := range append([]int{pid}, descendants(pid)...) {
		dir := filepath.Join("/proc", strconv.Itoa(p), "fd")
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			target, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			if inode, ok := strings.CutPrefix(target, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
				return true
			}
		}
	}
	return false
}

// listeningInodes returns the socket inodes listening on 127.0.0.1:port (or
// 0.0.0.0:port), read from /proc/net/tcp. ok is false without /proc.
func listeningInodes(port int) (inodes map[string]bool, ok bool) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return nil, false
	}
	defer f.Close()
	inodes = make(map[string]bool)
	loop := fmt.Sprintf("0100007F:%04X", port)
	any := fmt.Sprintf("00000000:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" {
			continue
		}
		if fields[1] == loop || fields[1] == any {
			inodes[fields[9]] = true
		}
	}
	return inodes, true
}

// descendants returns the PIDs of all descendants of pid, read from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := make(map[int][]int)
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := parentPID(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// parentPID reads the parent PID of p from /proc/p/stat.
func parentPID(p int) (int, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "stat"))
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid …; comm may contain spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(fields[1])
	return pp, err == nil
}

// processName returns /proc/p/comm without its newline.
func processName(p int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// logWatch reads what one run of a server adds to its log files and output,
// for the check, while waiting for its port, that its bind failed. Each call
// reads only what was added since the last one; the end of what was read is
// kept, so that a line written in two pieces is matched too.
type logWatch struct {
	s      *Server
	off    map[string]int64 // where the run's text starts, then where to read on
	carry  []byte           // the end of what was read, with each new read
	outLen int64            // the process output's length at the last check
	failed bool
}

// watchLogs starts a logWatch at the current end of the log files: they are
// kept across runs, and an earlier run's failure says nothing about the next.
func (s *Server) watchLogs() *logWatch {
	w := &logWatch{s: s, off: make(map[string]int64)}
	for _, name := range s.flavor.logFiles(s) {
		if st, err := os.Stat(name); err == nil {
			w.off[name] = st.Size()
		}
	}
	return w
}

// bindFailed reports whether the run's logs or the output of its process p
// so far say that the server could not bind its port.
func (w *logWatch) bindFailed(p *process) bool {
	if w.failed {
		return true
	}
	for _, name := range w.s.flavor.logFiles(w.s) {
		data, err := readFrom(name, w.off[name])
		if err != nil || len(data) == 0 {
			continue
		}
		w.off[name] += int64(len(data))
		text := append(w.carry, data...)
		if w.s.flavor.portTaken(string(text)) {
			w.failed = true
			return true
		}
		w.carry = slices.Clone(text[max(len(text)-512, 0):])
	}
	if n := p.out.written(); n != w.outLen {
		w.outLen = n
		w.failed = w.s.flavor.portTaken(string(p.out.bytes()))
	}
	return w.failed
}

// readFrom returns what a file holds from offset off on; a negative off
// counts from the end (at most the last -off bytes).
func readFrom(name string, off int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if off < 0 {
		off = max(st.Size()+off, 0)
	}
	if st.Size() <= off {
		return nil, nil
	}
	buf := make([]byte, st.Size()-off)
	k, err := f.ReadAt(buf, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return buf[:k], err
}
