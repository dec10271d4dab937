package testserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errPortTaken reports that the reserved port was taken by another process
// between its reservation and the server's start-up. Launch retries on it.
var errPortTaken = errors.New("testserver: port taken by another process")

// ports remembers the ports this process handed out, so that two servers
// started at the same time never get the same one (the kernel may hand out a
// port again once its probe listener is closed).
var ports struct {
	sync.Mutex
	used map[int]bool
}

// reservePort returns a free TCP port on 127.0.0.1. The port is free when
// returned but not held: see the package documentation.
func reservePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testserver: reserving a port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ports.Lock()
		if ports.used == nil {
			ports.used = make(map[int]bool)
		}
		taken := ports.used[port]
		ports.used[port] = true
		ports.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, errors.New("testserver: no free port found")
}

// releasePort lets the port be handed out again.
func releasePort(port int) {
	ports.Lock()
	delete(ports.used, port)
	ports.Unlock()
}

// waitPort returns when addr accepts a TCP connection, when exited is closed
// (the server process ended), or when ctx ends. There is no event to wait for,
// so it polls with a short delay.
func waitPort(ctx context.Context, addr string, exited <-chan struct{}) error {
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
