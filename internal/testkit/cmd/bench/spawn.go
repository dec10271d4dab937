package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is a running child process of this program (see childMain).
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan result // every JSON line it printed, closed at EOF
	start time.Time
}

// startChild re-executes this program in a role. passwords go through the
// environment, one per account of -jid.
func startChild(ctx context.Context, args []string, passwords []string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), passwordEnv+"="+strings.Join(passwords, ","))
	cmd.Stderr = os.Stderr
	// On Linux the child dies with this process (see dieWithParent); on
	// ctx's end it gets SIGTERM.
	cmd.SysProcAttr = dieWithParent()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan result, 4), start: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		for sc.Scan() {
			var r result
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Event != "" {
				c.lines <- r
			}
		}
	}()
	return c, nil
}

// ready waits for the child's "ready" line.
func (c *child) ready(ctx context.Context) (result, error) {
	select {
	case r, ok := <-c.lines:
		if ok && r.Event == "ready" {
			return r, nil
		}
		if ok && r.Error != "" {
			return r, errors.New(r.Error)
		}
		return r, errors.New("bench: child ended before it was ready")
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
}

// stats asks the responder for its counts so far.
func (c *child) stats(ctx context.Context) (result, error) {
	if _, err := io.WriteString(c.stdin, "stats\n"); err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		select {
		case r, ok := <-c.lines:
			if !ok {
				return result{}, errors.New("bench: responder ended")
			}
			if r.Event == "stats" {
				return r, nil
			}
		case <-ctx.Done():
			return result{}, ctx.Err()
		}
	}
}

// proc is what the kernel says about a child that ended.
type proc struct {
	CPU    float64 // user+system seconds, whole process
	MaxRSS int64   // peak resident set, bytes
	Wall   float64 // seconds from start to exit
}

// wait closes the child's standard input, waits for it to exit and returns
// its last result line with its resource usage.
func (c *child) wait() (result, proc, error) {
	c.stdin.Close()
	var last result
	got := false
	for r := range c.lines {
		if r.Event == "result" {
			last, got = r, true
		}
	}
	err := c.cmd.Wait()
	var p proc
	p.Wall = time.Since(c.start).Seconds()
	if st := c.cmd.ProcessState; st != nil {
		p.CPU = (st.UserTime() + st.SystemTime()).Seconds()
		p.MaxRSS = maxRSS(st)
	}
	switch {
	case !got:
		return last, p, fmt.Errorf("bench: child %v: no result (%v)", c.cmd.Args[1:2], err)
	case last.Error != "":
		return last, p, errors.New(last.Error)
	}
	return last, p, nil
}
