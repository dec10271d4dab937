//go:build unix

package interop

import (
	"os"
	"os/exec"
	"syscall"
)

// newGroup has cmd lead a process group of its own, so that killGroup
// reaches what it starts too.
func newGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// killGroup sends SIGKILL to the process group p leads (see newGroup). p
// must not be reaped yet, so that the group's number is still ours.
func killGroup(p *os.Process) { syscall.Kill(-p.Pid, syscall.SIGKILL) }
