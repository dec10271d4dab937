package testserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// errPortTaken reports that the reserved port was taken by another process
// between its reservation and the server's start-up. Launch retries on it.
var errPortTaken = errors.New("testserver: port taken by another process")

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
// It picks at random below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where neither another program's
// "listen on port 0" nor any outgoing connection's source port can take it
// between this check and the server's bind: under a heavy loopback load
// (thousands of connections from other tests) a port handed out by the
// kernel, free when checked, was taken before Prosody bound it. Other
// processes that use this package skip the port while this one holds it:
// each reservation holds an flock on a file named after the port in
// os.TempDir()/xmpptrack-ports, which the kernel releases if this process
// dies. A port is kept only if 127.0.0.1:port can be bound. Without a range
// below the ephemeral one it falls back to the kernel's choice (port 0).
func reservePort() (int, error) {
	if lo, hi := portRange(); hi > lo {
		for range 200 {
			if port := lo + rand.IntN(hi-lo); claimPort(port) {
				return port, nil
			}
		}
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

// portRange returns the range [lo, hi) the harness picks ports from: up to
// 12,000 ports below the ephemeral range, above 10,000.
func portRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	hi, err = strconv.Atoi(f[0])
	if err != nil {
		return 0, 0
	}
	return max(hi-12000, 10000), hi
}

// claimPort takes port for this process if no other reservation holds it
// and 127.0.0.1:port can be bound.
func claimPort(port int) bool {
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = make(map[int]*os.File)
	}
	if _, taken := ports.used[port]; taken {
		return false
	}
	lock, ok := lockPort(port)
	if !ok {
		return false
	}
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return false
	}
	l.Close()
	ports.used[port] = lock
	return true
}

// lockPort takes the cross-process lock of port. ok is false if another
// process (or another reservation in this one) holds it; lock is nil if no
// lock file can be used here, which leaves only the bind check.
func lockPort(port int) (lock *os.File, ok bool) {
	dir := filepath.Join(os.TempDir(), "xmpptrack-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, !errors.Is(err, syscall.EWOULDBLOCK)
	}
	return f, true
}

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
