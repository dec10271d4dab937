package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// child is a helper process of the bench (the recipient or the HTTP load
// client): this program started again with other flags. It says "ready" on
// its standard output once it can work, then answers each line the parent
// writes to its standard input with one line.
type child struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
}

// startChild starts this program with args and extra environment, and waits
// for its "ready". outSize is the buffer for its answers.
func startChild(name string, env []string, outSize int, args ...string) (*child, error) {
	return startChildFiles(name, env, nil, outSize, args...)
}

// startChildFiles is startChild with files handed to the child from file
// descriptor 3 on.
func startChildFiles(name string, env []string, files []*os.File, outSize int, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, in: in, out: bufio.NewReaderSize(out, outSize)}
	if line, err := c.out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		c.close()
		return nil, fmt.Errorf("%s: %q %v", name, line, err)
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// ask writes n as a line and returns the child's answer, split into fields.
func (c *child) ask(n int64) ([]string, error) {
	if _, err := fmt.Fprintln(c.in, n); err != nil {
		return nil, err
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return nil, err
	}
	return strings.Fields(line), nil
}

// close ends the child (its input ends) and reaps it.
func (c *child) close() {
	c.in.Close()
	c.cmd.Wait()
}
