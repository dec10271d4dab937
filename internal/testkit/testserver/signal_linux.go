package testserver

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// signalDescendant sends sig to target, a descendant of the started
// process, through a pidfd opened and then checked to be still a child of
// the started process, so that a PID freed meanwhile and reused by another
// process is never signalled.
func (p *process) signalDescendant(target int, sig syscall.Signal) {
	fd, err := unix.PidfdOpen(target, 0)
	if err != nil {
		return // gone
	}
	defer unix.Close(fd)
	if pp, ok := parentPID(target); ok && pp == p.cmd.Process.Pid {
		select {
		case <-p.done: // reaped: pid may belong to another process now
		default:
			unix.PidfdSendSignal(fd, sig, nil, 0)
		}
	}
}

// setDeathSignal has the kernel kill the started process at once if this
// one dies, before the reaper sees its pipe close.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
