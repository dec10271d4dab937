//go:build unix

package testserver

import (
	"errors"
	"os/exec"
	"syscall"
)

// supported reports why servers cannot be started on this system: nil on
// Unix systems.
func supported() error { return nil }

// runAs has cmd run as the user and group of c; nil runs it as ourselves.
func runAs(cmd *exec.Cmd, c *credential) {
	if c == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: c.uid, Gid: c.gid}
}

// newGroup has cmd lead a new process group (a reaper's).
func newGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// joinGroup has cmd start in process group pgid, keeping the attributes
// it has (a user to run as).
func joinGroup(cmd *exec.Cmd, pgid int) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pgid = true, pgid
	setDeathSignal(cmd.SysProcAttr) // on Linux: the kernel kills it too when we die
}

// signalGroup sends sig to every process of group pgid. A group that is
// gone is no error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
