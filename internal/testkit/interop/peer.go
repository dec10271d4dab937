package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configure a responder peer. Addr, JID and Password are required;
// the zero value of every other field is a documented default.
type Options struct {
	// Addr is the server's client address, "host:port" (testserver's
	// Server.Addr).
	Addr string
	// JID is the account's bare JID, Password its password.
	JID      string
	Password string

	// CertPEM, if set, makes the peer negotiate STARTTLS and trust only this
	// certificate (testserver's Server.CertPEM), checked against the JID's
	// domain. Nil: plaintext, for loopback servers only.
	CertPEM []byte

	// MarkDelay is how long after receiving a message the peer sends its
	// <displayed/> marker. Zero: at once (still after the receipt). Negative:
	// never.
	MarkDelay time.Duration

	// RequireMarkable limits markers to messages carrying <markable/>. By
	// default every chat or normal message with a body and an id is marked.
	RequireMarkable bool

	// Room is the bare JID of a room to join before the peer is ready
	// (slixmpp only), as Nick (default: the library's name).
	Room string
	Nick string
	// RoomMarkers makes the peer mark group chat messages of other occupants
	// of Room (see the package documentation for the id it references).
	RoomMarkers bool

	// ReadyTimeout bounds log-in (and room join). Zero means 30 s.
	ReadyTimeout time.Duration

	// Debug makes the Python libraries log at debug level (to Logs).
	Debug bool
}

// ErrExited is returned when a peer's process has exited while something
// waited for it.
var ErrExited = errors.New("interop: peer exited")

// Peer is a running Python peer process. Its methods are safe for
// concurrent use.
type Peer struct {
	kind  Kind
	dir   string
	cmd   *exec.Cmd
	stdin io.WriteCloser

	stderr *tail
	stdout *tail

	mu      sync.Mutex
	events  []Event
	changed chan struct{} // closed and replaced when events or exited change
	exited  bool
	waitErr error
	ready   Event

	done     chan struct{} // closed once the process is reaped
	stopOnce sync.Once
	stopErr  error
}

// StartSlixmpp starts a slixmpp responder for a test and stops it in
// t.Cleanup (logging its output first if the test failed). It skips the test
// if slixmpp is unavailable, or fails it under CI=true.
func StartSlixmpp(t testing.TB, opts Options) *Peer {
	t.Helper()
	return start(t, Slixmpp, opts)
}

// StartAioxmpp starts an aioxmpp responder for a test, like StartSlixmpp.
// Options.Room is not supported.
func StartAioxmpp(t testing.TB, opts Options) *Peer {
	t.Helper()
	return start(t, Aioxmpp, opts)
}

func start(t testing.TB, kind Kind, opts Options) *Peer {
	t.Helper()
	requirePeer(t, kind)
	p, err := Launch(t.Context(), kind, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("interop: %s peer %s (pid %d) output:\n%s", kind, p.JID(), p.PID(), p.Logs())
		}
		if err := p.Stop(); err != nil {
			t.Errorf("interop: stopping %s peer: %v", kind, err)
		}
	})
	return p
}

// Launch starts a responder of kind and returns once it reported ready. ctx
// bounds start-up only. The caller must call Stop.
func Launch(ctx context.Context, kind Kind, opts Options) (*Peer, error) {
	args, extraEnv, err := opts.args(kind)
	if err != nil {
		return nil, err
	}
	if err := Available(kind); err != nil {
		return nil, err
	}
	dir, err := writeScripts()
	if err != nil {
		return nil, err
	}
	if opts.CertPEM != nil {
		ca := filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(ca, opts.CertPEM, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("interop: %w", err)
		}
		args = append(args, "--cafile", ca)
	}
	script := map[Kind]string{Slixmpp: "slix_responder.py", Aioxmpp: "aio_responder.py"}[kind]
	p, err := startProcess(kind, dir, script, args, extraEnv)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	wait := opts.ReadyTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ev, err := p.WaitEvent(ctx, func(e Event) bool { return e.Kind == EventReady || e.Kind == EventError })
	if err == nil && ev.Kind == EventError {
		err = fmt.Errorf("interop: %s peer %s: %s", kind, opts.JID, ev.Error)
	} else if err != nil {
		err = fmt.Errorf("interop: %s peer %s not ready: %w", kind, opts.JID, err)
	}
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("%w\n--- %s peer output ---\n%s", err, kind, p.Logs())
	}
	p.mu.Lock()
	p.ready = ev
	p.mu.Unlock()
	return p, nil
}

// args returns the command-line arguments and extra environment of a
// responder (the password travels in the environment, not in argv).
func (o Options) args(kind Kind) (args, env []string, err error) {
	host, port, err := net.SplitHostPort(o.Addr)
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("interop: Options.Addr %q: %w", o.Addr, err)
	case o.JID == "" || o.Password == "":
		return nil, nil, errors.New("interop: Options.JID and Options.Password are required")
	case o.Room != "" && kind != Slixmpp:
		return nil, nil, fmt.Errorf("interop: Options.Room is supported by slixmpp peers only, not %s", kind)
	case o.RoomMarkers && o.Room == "":
		return nil, nil, errors.New("interop: Options.RoomMarkers needs Options.Room")
	}
	wait := o.ReadyTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	args = []string{
		"--jid", o.JID,
		"--host", host,
		"--port", port,
		"--mark-delay", formatDelay(o.MarkDelay),
		"--timeout", strconv.FormatFloat(wait.Seconds(), 'f', -1, 64),
		"--log-level", "INFO",
	}
	if o.Debug {
		args[len(args)-1] = "DEBUG"
	}
	if o.RequireMarkable {
		args = append(args, "--require-markable")
	}
	if o.Room != "" {
		nick := o.Nick
		if nick == "" {
			nick = string(kind)
		}
		args = append(args, "--room", o.Room, "--nick", nick)
		if o.RoomMarkers {
			args = append(args, "--room-markers")
		}
	}
	return args, []string{"XT_PASSWORD=" + o.Password}, nil
}

// formatDelay renders a mark delay for the scripts: seconds, or "never".
func formatDelay(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// startProcess starts Python on script in dir, in its own process group,
// with standard input as a lifeline: the script exits when it closes.
func startProcess(kind Kind, dir, script string, args, extraEnv []string) (*Peer, error) {
	cmd := exec.Command(Python, append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	cmd.Env = pythonEnv(extraEnv)
	newGroup(cmd)
	p := &Peer{
		kind:    kind,
		dir:     dir,
		cmd:     cmd,
		stderr:  &tail{max: 256 << 10},
		stdout:  &tail{max: 64 << 10},
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("interop: %w", err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("interop: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("interop: starting %s: %w", Python, err)
	}
	go p.read(stdout)
	return p, nil
}

// read consumes standard output until the process closes it, then reaps the
// process.
func (p *Peer) read(stdout io.Reader) {
	r := bufio.NewReaderSize(stdout, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if line = bytes.TrimSpace(line); len(line) > 0 {
			p.stdout.Write(append(line, '\n'))
			if ev, perr := ParseEvent(line); perr == nil {
				p.mu.Lock()
				p.events = append(p.events, ev)
				close(p.changed)
				p.changed = make(chan struct{})
				p.mu.Unlock()
			}
		}
		if err != nil {
			break
		}
	}
	err := p.cmd.Wait()
	p.mu.Lock()
	p.exited = true
	p.waitErr = err
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	close(p.done)
}

// WaitEvent returns the first event, from the start of the peer's output,
// for which match is true. It fails when ctx is done or when the peer has
// exited without such an event (ErrExited).
func (p *Peer) WaitEvent(ctx context.Context, match func(Event) bool) (Event, error) {
	next := 0
	for {
		p.mu.Lock()
		evs := p.events[next:len(p.events):len(p.events)]
		changed, exited, werr := p.changed, p.exited, p.waitErr
		p.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e, nil
			}
		}
		next += len(evs)
		if exited {
			return Event{}, fmt.Errorf("%w (%v)", ErrExited, exitStatus(werr))
		}
		select {
		case <-ctx.Done():
			return Event{}, context.Cause(ctx)
		case <-changed:
		}
	}
}

// WaitMessage returns the n-th (from 1) message the peer received, waiting
// for it as WaitEvent does.
func (p *Peer) WaitMessage(ctx context.Context, n int) (Event, error) {
	if n < 1 {
		return Event{}, fmt.Errorf("interop: WaitMessage(%d): n counts from 1", n)
	}
	seen := 0
	return p.WaitEvent(ctx, func(e Event) bool {
		if e.Kind != EventMessage {
			return false
		}
		seen++
		return seen == n
	})
}

// Events returns a copy of every event so far.
func (p *Peer) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// Kind returns the peer's library.
func (p *Peer) Kind() Kind { return p.kind }

// JID returns the full JID the peer is bound to.
func (p *Peer) JID() string { return p.Ready().JID }

// Ready returns the peer's ready event: its JID, whether it uses TLS and,
// with Options.Room, the room, its nick and whether the room announces
// urn:xmpp:sid:0 (RoomSID).
func (p *Peer) Ready() Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready
}

// PID returns the Python process ID.
func (p *Peer) PID() int { return p.cmd.Process.Pid }

// Kill ends the peer's process at once (SIGKILL on Unix), as a crash would:
// it leaves without closing its stream. Stop still removes its directory.
// A peer already reaped is not signalled.
func (p *Peer) Kill() error { return p.cmd.Process.Kill() }

// Done is closed once the process has exited and been reaped.
func (p *Peer) Done() <-chan struct{} { return p.done }

// Err returns the process's exit status once Done is closed (nil for a
// clean exit), and nil before.
func (p *Peer) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Logs returns the tail of the peer's standard error (library logs,
// tracebacks) and standard output (events), for failure messages.
func (p *Peer) Logs() string {
	return fmt.Sprintf("== stderr ==\n%s\n== stdout ==\n%s", p.stderr.bytes(), p.stdout.bytes())
}

// stopGrace is how long a peer has to exit after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// Stop stops the peer: SIGTERM, then SIGKILL to its process group if it has
// not exited after a grace period; it waits until the process is reaped and
// removes its directory. It returns an error if SIGKILL was needed. Stop is
// idempotent.
func (p *Peer) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Peer) stop() error {
	var errs []error
	select {
	case <-p.done:
	default:
		// os.Process.Signal does not signal a reaped process.
		p.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(stopGrace)
		select {
		case <-p.done:
			timer.Stop()
		case <-timer.C:
			errs = append(errs, fmt.Errorf("interop: %s peer (pid %d) ignored SIGTERM for %v; killed", p.kind, p.PID(), stopGrace))
			// The group leader is not reaped yet, so the group is still ours.
			killGroup(p.cmd.Process)
			timer.Reset(10 * time.Second)
			select {
			case <-p.done:
			case <-timer.C:
				errs = append(errs, fmt.Errorf("interop: %s peer (pid %d) did not exit after SIGKILL", p.kind, p.PID()))
			}
		}
	}
	p.stdin.Close()
	if err := os.RemoveAll(p.dir); err != nil {
		errs = append(errs, fmt.Errorf("interop: %w", err))
	}
	return errors.Join(errs...)
}

// exitStatus describes Wait's result.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tail) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf)
}
