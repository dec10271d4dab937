package testserver

import (
	"fmt"
	"io"
	"os/exec"
	"sync"
)

// reaperScript is the program of a reaper (run by /bin/sh, $1 the server's
// directory). It leads the process group that the server joins, and reads a
// pipe whose only writer is the harness's process:
//
//   - a line ("sweep") means the harness stopped the server itself: the reaper
//     kills what is left of the group (stragglers, itself included) and leaves
//     the directory to the harness (a restart reuses it);
//   - end of file without a line means the harness's process died without
//     stopping the server (SIGKILL, a panic, os.Exit, a test timeout): the
//     reaper starts a remover through setsid, in a session (and so a group)
//     of its own, which answers once it runs there, then kills the group,
//     itself included. The remover waits until the group is empty (at most
//     60 s) and deletes the directory. The reaper kills the group only after
//     the remover's answer, or the remover would die with it; and it kills
//     it itself, as its leader, so that the group's number cannot have been
//     reused by then. Without setsid it just kills the group.
//
// It ignores the signals a terminal or a stopping harness may send to the
// group, so that only SIGKILL ends it early.
const reaperScript = `trap '' HUP INT TERM QUIT PIPE
if read -r _; then kill -s KILL 0; exit 0; fi
if [ -n "$1" ] && command -v setsid >/dev/null 2>&1; then
	ready=$(setsid -f /bin/sh -c '
		trap "" HUP INT TERM QUIT PIPE
		echo ready
		exec </dev/null >/dev/null 2>&1
		i=0
		while kill -0 -- "-$1" 2>/dev/null && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i+1)); done
		rm -rf -- "$2"' xmpptrack-reaper "$$" "$1" </dev/null 2>/dev/null)
fi
kill -s KILL 0
`

// reaper makes a server process die with the harness's process, whatever
// kills the latter, and takes its whole process tree with it.
//
// Linux's Pdeathsig (see setDeathSignal) alone is not enough: it reaches only the started process, and
// ejabberdctl (a shell script) keeps the Erlang VM as a child rather than
// exec'ing it, so the VM outlived a killed test binary. A reaper is a /bin/sh
// started first, as the leader of a new process group; the server is started
// into that group, and so is everything it starts unless it changes its group
// itself. The reaper waits on a pipe that only this process writes to: the
// kernel closes it when this process dies, however it dies, and the reaper
// then kills the group. The server starts in the group, so no window exists
// in which it runs unguarded.
type reaper struct {
	cmd  *exec.Cmd
	w    io.WriteCloser
	once sync.Once
}

// startReaper starts a reaper for a server whose directory is dir.
func startReaper(dir string) (*reaper, error) {
	cmd := exec.Command("/bin/sh", "-c", reaperScript, "xmpptrack-reaper", dir)
	newGroup(cmd)
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("testserver: reaper: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testserver: starting a reaper: %w", err)
	}
	return &reaper{cmd: cmd, w: w}, nil
}

// pgid is the process group the guarded server must join.
func (r *reaper) pgid() int { return r.cmd.Process.Pid }

// sweep ends the reaper once the server it guards has been stopped and
// reaped: it kills whatever is left in the group and leaves the directory.
// It is idempotent and waits until the reaper is gone.
func (r *reaper) sweep() {
	r.once.Do(func() {
		io.WriteString(r.w, "sweep\n") // fails only if the reaper was killed already
		r.w.Close()
		r.cmd.Wait()
	})
}

// startGuarded starts cmd, with the process attributes the harness needs,
// in the process group of a new reaper (see reaper), and returns it as a
// process whose done channel closes once it is reaped. cmd may have been
// given a user to run as (runAs).
func startGuarded(cmd *exec.Cmd, dir string) (*process, error) {
	r, err := startReaper(dir)
	if err != nil {
		return nil, err
	}
	joinGroup(cmd, r.pgid())
	p := &process{cmd: cmd, done: make(chan struct{}), out: &tail{max: 64 << 10}, reaper: r}
	if cmd.Stdout == nil && cmd.Stderr == nil { // tests set their own
		cmd.Stdout, cmd.Stderr = p.out, p.out
	}
	if err := cmd.Start(); err != nil {
		r.sweep()
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}
