//go:build !unix

package interop

import (
	"os"
	"os/exec"
)

// newGroup does nothing: this system has no process groups.
func newGroup(*exec.Cmd) {}

// killGroup kills p alone: without process groups, what p started may
// outlive it.
func killGroup(p *os.Process) { p.Kill() }
