package testserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// Kind names a server implementation.
type Kind string

// The supported servers.
const (
	// Prosody is Prosody 0.12, started with "prosody -F".
	Prosody Kind = "prosody"
	// Ejabberd is ejabberd 23.01, started with "ejabberdctl foreground".
	Ejabberd Kind = "ejabberd"
)

// Kinds returns every supported Kind, for tests that run against each server.
func Kinds() []Kind { return []Kind{Prosody, Ejabberd} }

// Options configure a server. The zero value is a server without accounts,
// with MAM on.
type Options struct {
	// Accounts are the localparts of the accounts to create before Launch
	// returns. Each gets a random password (see Server.Password).
	Accounts []string

	// NoMAM turns message archive management off (benchmarks: archiving
	// dominates the servers' cost per message). See the package documentation
	// for what it means for stanza-ids.
	NoMAM bool

	// HTTPUpload turns on XEP-0363 HTTP File Upload: Prosody's
	// mod_http_file_share, ejabberd's mod_http_upload, as the service
	// UploadDomain(), serving plain HTTP on a random loopback port
	// (HTTPAddr). Off by default, so other tests' servers do not change.
	HTTPUpload bool

	// UploadLimit is the largest file the upload service accepts, in bytes.
	// Zero means 10 MiB.
	UploadLimit int64

	// Port is the client port on 127.0.0.1. Zero means a free random one
	// (retried if another process takes it first); a fixed port that is
	// taken fails Launch.
	Port int

	// Debug raises the server's log level to debug.
	Debug bool

	// StartTimeout bounds start-up, account creation included, and the
	// stop of a start that failed: a server still running when it ends
	// gets SIGKILL, whatever its grace period, but not before 2 s after its
	// stop signal. Zero means 30 s.
	StartTimeout time.Duration

	// Logf receives progress messages of the harness (not the server's log).
	// Nil means silent; Start uses t.Logf.
	Logf func(format string, args ...any)
}

// Server is a running test server. Its methods are safe for concurrent use.
type Server struct {
	kind   Kind
	opts   Options
	flavor flavor
	bin    string
	dir    string
	port   int
	// httpPort is the HTTP upload port, 0 without Options.HTTPUpload.
	httpPort int
	cert     *certificate

	// life serializes Stop, Restart and RegisterAccount.
	life sync.Mutex

	mu       sync.Mutex
	accounts map[string]string
	proc     *process
	stopped  bool
	startup  time.Duration
}

// flavor is what differs between the servers.
type flavor interface {
	binary() (string, error)
	prepareDir(*Server) error
	configure(*Server) error
	command(s *Server, bin string) *exec.Cmd
	preRegister(*Server, map[string]string) error
	postRegister(context.Context, *Server, map[string]string) error
	register(ctx context.Context, s *Server, local, password string) error
	// termTarget is the PID to send signal() to for a clean stop, or
	// -pgid for the whole process group.
	termTarget(pid, pgid int) int
	signal() syscall.Signal
	grace() time.Duration
	logFiles(*Server) []string
	portTaken(logs string) bool
	release()
}

func newFlavor(kind Kind) (flavor, error) {
	switch kind {
	case Prosody:
		return prosody{}, nil
	case Ejabberd:
		return newEjabberd()
	}
	return nil, fmt.Errorf("testserver: unknown server kind %q", kind)
}

// Available reports why kind cannot be started here, or nil if it can.
func Available(kind Kind) error {
	if err := supported(); err != nil {
		return err
	}
	f, err := newFlavor(kind)
	if err != nil {
		return err
	}
	_, err = f.binary()
	return err
}

// Start launches a server for a test and stops it in t.Cleanup (logging the
// server's log tail first if the test failed). Without the server's binary
// the test is skipped, unless the environment variable CI is "true": then it
// fails.
func Start(t testing.TB, kind Kind, opts Options) *Server {
	t.Helper()
	require(t, string(kind), Available(kind))
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s, err := Launch(t.Context(), kind, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testserver: %s log tail (%s):\n%s", kind, s.Dir(), s.Logs())
		}
		if err := s.Stop(); err != nil {
			t.Errorf("testserver: stopping %s: %v", kind, err)
		}
	})
	return s
}

// portAttempts is how many ports Launch tries when the server finds its port
// taken (see reservePort).
const portAttempts = 5

// require skips t when err says why what cannot be started here, or fails it
// when the environment variable CI is "true".
func require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("testserver: %s is required under CI=true: %v", what, err)
	}
	t.Skipf("testserver: %s not available: %v", what, err)
}

// credential is a local user's user and group IDs (see runAs).
type credential struct{ uid, gid uint32 }

// credentialOf returns the user and group IDs of a local user.
func credentialOf(name string) (*credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("testserver: user %s: %w", name, err)
	}
	return &credential{uid: uint32(uid), gid: uint32(gid)}, nil
}

// Launch starts a server and returns once its port accepts connections and
// its accounts exist. The caller must call Stop. ctx bounds start-up only.
func Launch(ctx context.Context, kind Kind, opts Options) (*Server, error) {
	return launch(ctx, kind, opts, reservePort)
}

// launch is Launch with the reservation of the client and HTTP ports given
// (tests hand out taken ports with it).
func launch(ctx context.Context, kind Kind, opts Options, reserve func() (int, error)) (*Server, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	f, err := newFlavor(kind)
	if err != nil {
		return nil, err
	}
	return launchFlavor(ctx, kind, f, opts, reserve)
}

// launchFlavor is launch with the flavor given (tests start fake servers
// with it).
func launchFlavor(ctx context.Context, kind Kind, f flavor, opts Options, reserve func() (int, error)) (*Server, error) {
	bin, err := f.binary()
	if err != nil {
		return nil, fmt.Errorf("testserver: %s not available: %w", kind, err)
	}
	accounts := make(map[string]string, len(opts.Accounts))
	for _, local := range opts.Accounts {
		if _, err := jid.New(local, "localhost", ""); err != nil || local == "" {
			return nil, fmt.Errorf("testserver: invalid account %q: %v", local, err)
		}
		accounts[local] = newPassword()
	}
	opts.Accounts = slices.Sorted(maps.Keys(accounts))
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	began := time.Now()
	s := &Server{kind: kind, opts: opts, flavor: f, bin: bin, accounts: accounts}
	if msg := portFallback(); msg != "" && opts.Port == 0 {
		s.logf("%s", msg)
	}
	if err := s.setup(); err != nil {
		s.removeDir()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if opts.Port != 0 {
			s.port = opts.Port
		} else if s.port, err = reserve(); err != nil {
			break
		}
		if opts.HTTPUpload {
			if s.httpPort, err = reserve(); err != nil {
				break
			}
		}
		if err = f.configure(s); err != nil {
			break
		}
		err = s.startProcess(ctx)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == portAttempts || opts.Port != 0 || ctx.Err() != nil {
			break
		}
		s.logf("testserver: %s: port %d was taken, retrying on another port", kind, s.port)
		releasePort(s.port)
		if s.httpPort != 0 {
			releasePort(s.httpPort)
			s.httpPort = 0
		}
	}
	portReady := time.Since(began)
	if err == nil {
		if err = f.postRegister(ctx, s, accounts); err != nil {
			err = fmt.Errorf("testserver: %s: creating accounts: %w", kind, err)
		}
	}
	if err != nil {
		logs := s.Logs()
		s.stop(ctx) // within the start-up bound
		return nil, fmt.Errorf("%w\n--- %s log tail ---\n%s", err, kind, logs)
	}
	s.startup = time.Since(began)
	s.logf("testserver: %s on %s (pid %d, dir %s, MAM %v) ready in %v (port accepted after %v, %d accounts)",
		kind, s.Addr(), s.PID(), s.dir, !opts.NoMAM, s.startup.Round(time.Millisecond), portReady.Round(time.Millisecond), len(accounts))
	return s, nil
}

// setup creates the directory, the certificate and the pre-start accounts.
func (s *Server) setup() error {
	dir, err := os.MkdirTemp("", "xmpptrack-"+string(s.kind)+"-")
	if err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	s.dir = dir
	if s.cert, err = newCertificate(s.Domain(), s.MUCDomain()); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"cert.pem": s.cert.certPEM, "key.pem": s.cert.keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("testserver: %w", err)
		}
	}
	if err := s.flavor.prepareDir(s); err != nil {
		return fmt.Errorf("testserver: %s: preparing %s: %w", s.kind, dir, err)
	}
	if err := s.flavor.preRegister(s, s.accounts); err != nil {
		return fmt.Errorf("testserver: %s: creating accounts: %w", s.kind, err)
	}
	return nil
}

// startProcess starts the server and waits for its port. On failure the
// process is stopped; errPortTaken means another process holds the port.
func (s *Server) startProcess(ctx context.Context) error {
	logs := s.watchLogs()
	cmd := s.flavor.command(s, s.bin)
	cmd.Dir = s.dir
	// In a process group of its own, led by a reaper that kills the group if
	// this process dies without stopping the server (see reaper).
	p, err := startGuarded(cmd, s.dir)
	if err != nil {
		return fmt.Errorf("testserver: starting %s: %w", s.kind, err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	// A server that could not bind its port may keep running without it
	// (Prosody does): its log says so at once, so that is checked while
	// waiting, in what this run wrote only: the log files are kept across
	// runs, and an earlier run's failure said nothing about this one.
	taken := func() error {
		if logs.bindFailed(p) {
			return errPortTaken
		}
		return nil
	}
	err = waitPort(ctx, s.Addr(), p.done, taken)
	if err == nil && !listenerOwned(s.port, cmd.Process.Pid) {
		err = errPortTaken
	}
	if err != nil {
		err = portTakenIf(err, logs.bindFailed(p))
		s.stopProcess(ctx) // within the start-up bound
		return fmt.Errorf("testserver: %s on port %d: %w", s.kind, s.port, err)
	}
	return nil
}

// Stop stops the server (SIGTERM, then SIGKILL to its process group after a
// grace period), reaps it and removes its directory. It is idempotent.
func (s *Server) Stop() error { return s.stop(context.Background()) }

// stop is Stop, with SIGKILL at the latest when ctx ends.
func (s *Server) stop(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	err := s.stopProcess(ctx)
	s.flavor.release()
	if s.port != 0 {
		releasePort(s.port)
	}
	if s.httpPort != 0 {
		releasePort(s.httpPort)
	}
	return errors.Join(err, s.removeDir())
}

func (s *Server) removeDir() error {
	if s.dir == "" {
		return nil
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("testserver: removing %s: %w", s.dir, err)
	}
	return nil
}

// Restart stops the server process and starts it again on the same port with
// the same directory, so accounts persist but every session, stream
// management state included, is gone.
func (s *Server) Restart(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return errors.New("testserver: Restart after Stop")
	}
	if err := s.stopProcess(context.Background()); err != nil {
		return err
	}
	if err := s.flavor.configure(s); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	began := time.Now()
	if err := s.startProcess(ctx); err != nil {
		return fmt.Errorf("%w\n--- %s log tail ---\n%s", err, s.kind, s.Logs())
	}
	s.logf("testserver: %s restarted on %s (pid %d) in %v", s.kind, s.Addr(), s.PID(), time.Since(began).Round(time.Millisecond))
	return nil
}

// stopProcess stops the current process, if any, and waits until it is
// reaped. SIGKILL comes after the flavor's grace period, or when ctx ends
// if that is earlier (see process.stop).
func (s *Server) stopProcess(ctx context.Context) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	target := s.flavor.termTarget(p.cmd.Process.Pid, p.reaper.pgid())
	return p.stop(ctx, string(s.kind), target, s.flavor.signal(), s.flavor.grace(), s.logf)
}

// RegisterAccount creates another account on the running server. An empty
// password means a random one. It fails if the account exists.
func (s *Server) RegisterAccount(ctx context.Context, local, password string) error {
	if _, err := jid.New(local, s.Domain(), ""); err != nil || local == "" {
		return fmt.Errorf("testserver: invalid account %q: %v", local, err)
	}
	if password == "" {
		password = newPassword()
	}
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	_, exists := s.accounts[local]
	s.mu.Unlock()
	if exists {
		return fmt.Errorf("testserver: account %q exists", local)
	}
	if err := s.flavor.register(ctx, s, local, password); err != nil {
		return err
	}
	s.mu.Lock()
	s.accounts[local] = password
	s.mu.Unlock()
	return nil
}

// Kind returns the server's kind.
func (s *Server) Kind() Kind { return s.kind }

// Addr returns the client-to-server address, "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Domain returns the server's only virtual host, "localhost".
func (s *Server) Domain() string { return "localhost" }

// MUCDomain returns the multi-user chat service, "conference.localhost".
// Rooms are created on first join and are unlocked at once.
func (s *Server) MUCDomain() string { return "conference.localhost" }

// UploadDomain is the address of the HTTP File Upload service (with
// Options.HTTPUpload).
func (s *Server) UploadDomain() string { return "upload.localhost" }

// HTTPAddr is the 127.0.0.1:port of the HTTP upload service, empty without
// Options.HTTPUpload.
func (s *Server) HTTPAddr() string {
	if s.httpPort == 0 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort))
}

// uploadLimit is Options.UploadLimit with its default.
func (s *Server) uploadLimit() int64 {
	if s.opts.UploadLimit > 0 {
		return s.opts.UploadLimit
	}
	return 10 << 20
}

// MAM reports whether message archive management is on.
func (s *Server) MAM() bool { return !s.opts.NoMAM }

// JID returns the bare JID of an account (localpart@localhost).
func (s *Server) JID(local string) jid.JID {
	return jid.MustParse(local + "@" + s.Domain())
}

// Password returns an account's password, or "" for an unknown account.
func (s *Server) Password(local string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accounts[local]
}

// Accounts returns the localparts of all accounts, sorted.
func (s *Server) Accounts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.accounts))
}

// TLSConfig returns a new client configuration that trusts only the server's
// certificate (verification stays on) and expects ServerName "localhost".
func (s *Server) TLSConfig() *tls.Config { return s.cert.tlsConfig(s.Domain()) }

// CertPool returns a pool holding only the server's certificate.
func (s *Server) CertPool() *x509.CertPool { return s.cert.pool.Clone() }

// CertPEM returns the server's certificate in PEM form (for third-party
// clients).
func (s *Server) CertPEM() []byte { return slices.Clone(s.cert.certPEM) }

// Dir returns the server's temporary directory (removed by Stop).
func (s *Server) Dir() string { return s.dir }

// PID returns the process ID of the started process (for ejabberd, the
// ejabberdctl script whose descendant is the Erlang VM), or 0.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// StartupTime returns how long Launch took, account creation included.
func (s *Server) StartupTime() time.Duration { return s.startup }

// Logs returns the tail of the server's log files and of its standard output
// and error, for failure messages.
func (s *Server) Logs() string {
	var b []byte
	for _, name := range s.flavor.logFiles(s) {
		data, err := readFrom(name, -16<<10)
		if err != nil || len(data) == 0 {
			continue
		}
		b = fmt.Appendf(b, "== %s ==\n%s\n", filepath.Base(name), data)
	}
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		if out := p.out.bytes(); len(out) > 0 {
			b = fmt.Appendf(b, "== output ==\n%s\n", out)
		}
	}
	return string(b)
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

func (s *Server) logLevel() string {
	if s.opts.Debug {
		return "debug"
	}
	return "info"
}

// newPassword returns a random password that needs no escaping anywhere.
func newPassword() string {
	var b [9]byte
	rand.Read(b[:])
	return "pw-" + hex.EncodeToString(b[:])
}

// process is one run of the server.
type process struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed once reaped
	err    error         // Wait's result, valid once done is closed
	out    *tail
	reaper *reaper // leads the process group; sweep once done is closed
}

// signal sends sig to target: the started process itself, one of its
// descendants, or (negative) the reaper's process group. The started
// process is signalled through os.Process (a pidfd on Linux), a descendant
// only while it is still a child of the started process (see
// signalDescendant). The group is the reaper's, which is not reaped before
// the process is: its number is ours.
func (p *process) signal(target int, sig syscall.Signal) {
	switch {
	case target == p.cmd.Process.Pid:
		p.cmd.Process.Signal(sig)
	case target < 0:
		signalGroup(-target, sig)
	default:
		p.signalDescendant(target, sig)
	}
}

// killWait bounds the wait for a process to be reaped after SIGKILL.
const killWait = 10 * time.Second

// stopFloor is the least time a failed start's stop signal gets (or its
// grace, if shorter), even when the start-up bound has already ended.
const stopFloor = 2 * time.Second

// stop ends the process, named name in messages, and waits until it is
// reaped: sig to target (see signal), then SIGKILL to its process group
// after grace, or when ctx ends if that comes first, but not before
// stopFloor (or grace) has passed since sig (a failed start is stopped
// within its start-up bound plus stopFloor, however long the grace), then
// at most killWait for the end. Once it is reaped, its reaper kills any
// straggler of the group.
func (p *process) stop(ctx context.Context, name string, target int, sig syscall.Signal, grace time.Duration, logf func(string, ...any)) error {
	defer p.reaper.sweep()
	select {
	case <-p.done:
		return nil
	default:
	}
	pid := p.cmd.Process.Pid
	began := time.Now()
	p.signal(target, sig)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	floor := time.NewTimer(min(grace, stopFloor))
	defer floor.Stop()
	select {
	case <-p.done:
		logf("testserver: %s (pid %d) stopped in %v", name, pid, time.Since(began).Round(time.Millisecond))
		return nil
	case <-timer.C:
		logf("testserver: %s (pid %d) ignored %s for %v, killing its process group", name, pid, signalName(sig), grace)
	case <-ctx.Done():
		select {
		case <-p.done:
			logf("testserver: %s (pid %d) stopped in %v", name, pid, time.Since(began).Round(time.Millisecond))
			return nil
		case <-floor.C:
		}
		logf("testserver: %s (pid %d) still ran %v after %s, at the end of its start-up bound, killing its process group",
			name, pid, time.Since(began).Round(time.Millisecond), signalName(sig))
	}
	// The group's leader, the reaper, is not reaped yet, so the group is
	// still ours.
	if err := signalGroup(p.reaper.pgid(), syscall.SIGKILL); err != nil {
		return fmt.Errorf("testserver: killing %s (pid %d): %w", name, pid, err)
	}
	timer.Reset(killWait)
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		return fmt.Errorf("testserver: %s (pid %d) did not exit after SIGKILL", name, pid)
	}
}

// signalName names the stop signals in messages.
func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
	n   int64 // bytes written in all
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n += int64(len(p))
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// written returns how many bytes were written in all.
func (t *tail) written() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

func (t *tail) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.buf)
}
