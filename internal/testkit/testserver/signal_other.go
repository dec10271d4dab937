//go:build unix && !linux

package testserver

import "syscall"

// signalDescendant sends sig to target, a descendant of the started
// process, by its PID, if it is still a child of the started process and
// that one is not reaped. Without pidfds (Linux only) a PID freed and
// reused between that check and the kill would get the signal. The check
// reads /proc: where there is none, descendants are never signalled, and
// only the stop of the started process and the reaper's kill of its group
// end them.
func (p *process) signalDescendant(target int, sig syscall.Signal) {
	if pp, ok := parentPID(target); ok && pp == p.cmd.Process.Pid {
		select {
		case <-p.done: // reaped: pid may belong to another process now
		default:
			syscall.Kill(target, sig)
		}
	}
}

// setDeathSignal does nothing: only Linux kills a child when its parent
// dies (Pdeathsig). Here the reaper alone kills the server's group once it
// sees its pipe close.
func setDeathSignal(*syscall.SysProcAttr) {}
