package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Postgres is a throwaway PostgreSQL server (Debian's postgresql package,
// version 15 preferred): a cluster created by initdb in a temporary
// directory, run by postgres on a random 127.0.0.1 port with its Unix socket
// in that directory, trust authentication, and stopped by its PID. Running
// as root, the cluster belongs to the unprivileged "postgres" user (or
// "nobody"), since PostgreSQL refuses to run as root.
type Postgres struct {
	dir  string // the temporary directory; data in dir/data
	bin  string // directory of initdb, postgres and psql
	port int
	cred *credential // nil: run as ourselves
	logf func(format string, args ...any)

	life    sync.Mutex // serializes Stop and Restart
	mu      sync.Mutex
	proc    *process
	stopped bool
}

// PostgresOptions configures a Postgres. The zero value is ready to use.
type PostgresOptions struct {
	// NoFsync turns fsync off (faster, for tests that measure nothing about
	// durability).
	NoFsync bool
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// postgresBin finds the directory of PostgreSQL's server binaries.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { // version 15 first, then the newest
		vi, vj := filepath.Base(filepath.Dir(dirs[i])), filepath.Base(filepath.Dir(dirs[j]))
		if vi == "15" || vj == "15" {
			return vi == "15"
		}
		ni, _ := strconv.Atoi(vi)
		nj, _ := strconv.Atoi(vj)
		return ni > nj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("postgresql: initdb not found (install Debian's postgresql package)")
}

// PostgresAvailable reports why PostgreSQL cannot be started here, or nil.
func PostgresAvailable() error {
	if err := supported(); err != nil {
		return err
	}
	_, err := postgresBin()
	return err
}

// StartPostgres launches a PostgreSQL server for a test and stops it in
// t.Cleanup. Without PostgreSQL the test is skipped, unless the environment
// variable CI is "true": then it fails.
func StartPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	require(t, "PostgreSQL", PostgresAvailable())
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	p, err := LaunchPostgres(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testserver: postgres log tail (%s):\n%s", p.dir, p.Logs())
		}
		if err := p.Stop(); err != nil {
			t.Errorf("testserver: stopping postgres: %v", err)
		}
	})
	return p
}

// LaunchPostgres creates a cluster and starts PostgreSQL; it returns once
// the server answers queries. The caller must call Stop.
func LaunchPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	return launchPostgres(ctx, opts, reservePort)
}

// launchPostgres is LaunchPostgres with the port reservation given (tests
// hand out taken ports with it).
func launchPostgres(ctx context.Context, opts PostgresOptions, reserve func() (int, error)) (*Postgres, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	bin, err := postgresBin()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	began := time.Now()
	p := &Postgres{bin: bin, logf: opts.Logf}
	if msg := portFallback(); msg != "" {
		p.log("%s", msg)
	}
	if p.dir, err = os.MkdirTemp("", "xmpptrack-postgres-"); err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	if err := p.setup(ctx, opts); err != nil {
		os.RemoveAll(p.dir)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if p.port, err = reserve(); err != nil {
			break
		}
		err = p.start(ctx)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == portAttempts || ctx.Err() != nil {
			break
		}
		p.log("testserver: postgres: port %d was taken, retrying on another port", p.port)
		releasePort(p.port)
	}
	if err != nil {
		logs := p.Logs()
		p.stop(ctx) // within the start-up bound
		return nil, fmt.Errorf("%w\n--- postgres log tail ---\n%s", err, logs)
	}
	p.log("testserver: postgres on %s (pid %d, dir %s) ready in %v", p.Addr(), p.PID(), p.dir, time.Since(began).Round(time.Millisecond))
	return p, nil
}

// setup runs initdb as the unprivileged user and writes the configuration.
func (p *Postgres) setup(ctx context.Context, opts PostgresOptions) error {
	if os.Geteuid() == 0 {
		var err error
		for _, name := range []string{"postgres", "nobody"} {
			if p.cred, err = credentialOf(name); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("testserver: no unprivileged user to run PostgreSQL: %w", err)
		}
		if err := os.Chown(p.dir, int(p.cred.uid), int(p.cred.gid)); err != nil {
			return fmt.Errorf("testserver: %w", err)
		}
	}
	if err := os.Chmod(p.dir, 0o700); err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "initdb"), "-D", p.dataDir(), "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	runAs(cmd, p.cred)
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testserver: initdb: %v\n%s", err, out)
	}
	fsync := "on"
	if opts.NoFsync {
		fsync = "off"
	}
	conf := fmt.Sprintf(`listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
unix_socket_permissions = 0700
fsync = %s
max_connections = 200
shared_buffers = 64MB
log_min_messages = warning
log_line_prefix = '%%m [%%p] '
`, p.dir, fsync)
	f, err := os.OpenFile(filepath.Join(p.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(conf); err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	return nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.dir, "data") }

// start starts postgres on p.port and waits until it answers.
func (p *Postgres) start(ctx context.Context) error {
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.dataDir(), "-p", strconv.Itoa(p.port))
	cmd.Dir = p.dir
	runAs(cmd, p.cred)
	// In the process group of a reaper (see reaper). The postmaster's
	// children change their group, but exit when they see it die.
	pr, err := startGuarded(cmd, p.dir)
	if err != nil {
		return fmt.Errorf("testserver: starting postgres: %w", err)
	}
	p.mu.Lock()
	p.proc = pr
	p.mu.Unlock()
	// The postmaster exits when it cannot bind its port ("could not bind
	// IPv4 address ...: Address already in use").
	bindFailed := func() bool { return strings.Contains(string(pr.out.bytes()), "could not bind") }
	err = waitPort(ctx, p.Addr(), pr.done, nil)
	if err == nil && !listenerOwned(p.port, cmd.Process.Pid) {
		err = errPortTaken
	}
	err = portTakenIf(err, bindFailed())
	for err == nil {
		// The port accepts before the server is ready ("starting up").
		if _, qerr := p.SQL(ctx, "postgres", "SELECT 1"); qerr == nil {
			break
		} else if ctx.Err() != nil {
			err = fmt.Errorf("%w (last: %v)", ctx.Err(), qerr)
			break
		}
		select {
		case <-pr.done:
			err = errors.New("postgres exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		p.stopProcess(ctx) // within the start-up bound
		return fmt.Errorf("testserver: postgres on port %d: %w", p.port, err)
	}
	return nil
}

// Addr is the server's TCP address.
func (p *Postgres) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// Dir is the temporary directory.
func (p *Postgres) Dir() string { return p.dir }

// PID is the postmaster's process id (0 when stopped).
func (p *Postgres) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return 0
	}
	return p.proc.cmd.Process.Pid
}

// DSN returns a connection URL for database as user (the superuser
// "postgres" when user is empty), over TCP.
func (p *Postgres) DSN(user, database string) string {
	if user == "" {
		user = "postgres"
	}
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: p.Addr(), Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

// SQL runs statements with psql as the superuser in database and returns
// its output (unaligned, tuples only).
func (p *Postgres) SQL(ctx context.Context, database, statements string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", p.dir, "-p", strconv.Itoa(p.port), "-U", "postgres", "-d", database, "-c", statements)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("testserver: psql: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// CreateDatabase creates a database and returns its superuser DSN.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	if _, err := p.SQL(ctx, "postgres", `CREATE DATABASE "`+strings.ReplaceAll(name, `"`, `""`)+`"`); err != nil {
		return "", err
	}
	return p.DSN("", name), nil
}

// Logs returns the tail of the server's output.
func (p *Postgres) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return ""
	}
	return string(p.proc.out.bytes())
}

// Restart stops the server (fast shutdown: clients are disconnected) and
// starts it again on the same port with the same data.
func (p *Postgres) Restart(ctx context.Context) error {
	if err := p.Halt(); err != nil {
		return err
	}
	return p.Resume(ctx)
}

// Halt stops the server, keeping its data and port for Resume.
func (p *Postgres) Halt() error {
	p.life.Lock()
	defer p.life.Unlock()
	return p.stopProcess(context.Background())
}

// Resume starts a halted server again.
func (p *Postgres) Resume(ctx context.Context) error {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped {
		return errors.New("testserver: postgres was stopped")
	}
	return p.start(ctx)
}

// Stop stops the server and removes its directory. It is idempotent.
func (p *Postgres) Stop() error { return p.stop(context.Background()) }

// stop is Stop, with SIGKILL at the latest when ctx ends.
func (p *Postgres) stop(ctx context.Context) error {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.mu.Unlock()
	err := p.stopProcess(ctx)
	if p.port != 0 {
		releasePort(p.port)
	}
	if rerr := os.RemoveAll(p.dir); rerr != nil {
		err = errors.Join(err, fmt.Errorf("testserver: removing %s: %w", p.dir, rerr))
	}
	return err
}

// stopProcess asks for a fast shutdown (SIGINT), then kills the process
// group after 10 s, or when ctx ends if that is earlier, and reaps the
// postmaster.
func (p *Postgres) stopProcess(ctx context.Context) error {
	p.mu.Lock()
	pr := p.proc
	p.mu.Unlock()
	if pr == nil {
		return nil
	}
	return pr.stop(ctx, "postgres", pr.cmd.Process.Pid, syscall.SIGINT, 10*time.Second, p.log)
}

func (p *Postgres) log(format string, args ...any) {
	if p.logf != nil {
		p.logf(format, args...)
	}
}
