package examples_test

// End-to-end tests of the example programs: they are built once with
// "go build" and run as processes against a real Prosody, with
// examples/responder as the other party of examples/send.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// gorace spares each process the race detector's one-second sleep at exit.
const gorace = "GORACE=atexit_sleep_ms=0"

// binaries are built once for all tests.
var binaries struct {
	once sync.Once
	dir  string
	out  []byte
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// bin returns the path of the built example program name.
func bin(t *testing.T, name string) string {
	t.Helper()
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "xmpptrack-examples-")
		if binaries.err != nil {
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		args := []string{"build", "-o", binaries.dir + string(filepath.Separator)}
		if raceEnabled {
			args = append(args, "-race") // the library runs under the detector in the processes too
		}
		args = append(args, "github.com/xmpptrack/xmpptrack/examples/send",
			"github.com/xmpptrack/xmpptrack/examples/responder",
			"github.com/xmpptrack/xmpptrack/examples/demo")
		cmd := exec.Command(goBin, args...)
		binaries.out, binaries.err = cmd.CombinedOutput()
	})
	if binaries.err != nil {
		t.Fatalf("go build: %v\n%s", binaries.err, binaries.out)
	}
	return filepath.Join(binaries.dir, name)
}

// responder is a running examples/responder process.
type responder struct {
	lines chan string
}

// startResponder runs examples/responder as local and waits until it is ready.
func startResponder(t *testing.T, srv *testserver.Server, local string, args ...string) *responder {
	t.Helper()
	args = append([]string{"-jid", srv.JID(local).String(), "-addr", srv.Addr(), "-insecure"}, args...)
	cmd := exec.Command(bin(t, "responder"), args...)
	cmd.Env = append(os.Environ(), gorace, "XMPP_PASSWORD="+srv.Password(local))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &responder{lines: make(chan string, 1024)}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("responder %s: %v\n%s", local, err, stderr.String())
		}
	})
	r.expect(t, "ready ")
	return r
}

// expect waits for a line of the responder's output that contains s.
func (r *responder) expect(t *testing.T, s string) {
	t.Helper()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Fatalf("responder exited before printing %q", s)
			}
			if strings.Contains(line, s) {
				return
			}
		case <-timeout.C:
			t.Fatalf("responder never printed %q", s)
		}
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// send runs examples/send with args (and stdin when not empty).
func send(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "send"), args...)
	cmd.Env = append(append(os.Environ(), gorace), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("send: %v", err)
	}
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// textLine is one line of send's text output.
var textLine = regexp.MustCompile(`^ *([0-9.]+(?:ms|s))  (\S+)  ([A-Z_]+)(?:  (.*))?$`)

type change struct {
	id    string
	state tracking.MessageState
	rest  string
}

// parseText checks every line of send's text output and returns them.
func parseText(t *testing.T, out string) []change {
	t.Helper()
	var changes []change
	for line := range strings.Lines(out) {
		m := textLine.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil {
			t.Fatalf("malformed line %q in:\n%s", line, out)
		}
		st, ok := tracking.ParseState(m[3])
		if !ok {
			t.Fatalf("unknown state in %q", line)
		}
		changes = append(changes, change{id: m[2], state: st, rest: m[4]})
	}
	return changes
}

// byID groups the states printed for each id, in order.
func byID(changes []change) (ids []string, states map[string][]tracking.MessageState) {
	states = make(map[string][]tracking.MessageState)
	for _, c := range changes {
		if _, ok := states[c.id]; !ok {
			ids = append(ids, c.id)
		}
		states[c.id] = append(states[c.id], c.state)
	}
	return ids, states
}

// reached reports whether the last state is at or past target in the
// progress order.
func reached(states []tracking.MessageState, target tracking.MessageState) bool {
	last := states[len(states)-1]
	return last >= target && last <= tracking.SeenByRecipient
}

func TestExampleSend(t *testing.T) {
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"alice", "bob", "carol"}})
	room := "lobby@" + srv.MUCDomain()
	bob := startResponder(t, srv, "bob", "-display-after", "0", "-muc", room+"/bob")
	passwordFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte(srv.Password("alice")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-jid", srv.JID("alice").String(), "-addr", srv.Addr(), "-password-file", passwordFile}
	tls := append(base, "-insecure")
	plain := append(base, "-plaintext")
	to := func(local string) []string { return []string{"-to", srv.JID(local).String()} }
	args := func(parts ...[]string) []string {
		var all []string
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}

	// The subtests run one after the other: bob marks the newest message
	// from alice's bare JID, which must be the one being waited for.
	for _, tc := range []struct {
		wait  string
		state tracking.MessageState
		conn  []string
	}{
		{"server", tracking.DeliveredToServer, tls},
		{"delivered", tracking.DeliveredToRecipient, plain},
		{"seen", tracking.SeenByRecipient, tls},
	} {
		t.Run("wait="+tc.wait, func(t *testing.T) {
			body := "wait for " + tc.wait
			r := send(t, "", nil, args(tc.conn, to("bob"), []string{"-wait", tc.wait, body})...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			ids, states := byID(parseText(t, r.stdout))
			if len(ids) != 1 || states[ids[0]][0] != tracking.InTransit || !reached(states[ids[0]], tc.state) {
				t.Fatalf("want one message from IN_TRANSIT to %v or later:\n%s", tc.state, r.stdout)
			}
			bob.expect(t, body)
		})
	}

	t.Run("stdin", func(t *testing.T) {
		r := send(t, "one\n\ntwo\nthree\n", nil, args(plain, to("bob"))...)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		ids, states := byID(parseText(t, r.stdout))
		if len(ids) != 3 {
			t.Fatalf("want 3 messages (the empty line is skipped):\n%s", r.stdout)
		}
		for _, id := range ids {
			if st := states[id]; st[0] != tracking.InTransit || !reached(st, tracking.DeliveredToRecipient) {
				t.Fatalf("message %s: states %v", id, st)
			}
		}
		for _, body := range []string{"one", "two", "three"} {
			bob.expect(t, ": "+body) // in order
		}
		// Each IN_TRANSIT line shows the start of its text.
		var previews []string
		for _, c := range parseText(t, r.stdout) {
			if c.state == tracking.InTransit {
				previews = append(previews, c.rest)
			}
		}
		if fmt.Sprint(previews) != `["one" "two" "three"]` {
			t.Fatalf("IN_TRANSIT lines show %q, want each message's text:\n%s", previews, r.stdout)
		}
	})

	t.Run("nonexistent", func(t *testing.T) {
		r := send(t, "", nil, args(plain, []string{"-to", "nobody@" + srv.Domain(), "hello?"})...)
		if r.code != 2 {
			t.Fatalf("exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
		}
		changes := parseText(t, r.stdout)
		last := changes[len(changes)-1]
		if last.state != tracking.Error || !strings.HasPrefix(last.rest, "service-unavailable  ") {
			t.Fatalf("want ERROR with its condition and text:\n%s", r.stdout)
		}
		if !strings.Contains(r.stderr, "the account nobody@"+srv.Domain()+" may not exist") {
			t.Fatalf("want a hint that the account may not exist:\n%s", r.stderr)
		}
	})

	t.Run("offline", func(t *testing.T) {
		r := send(t, "", nil, args(plain, to("carol"), []string{"-timeout", "1s", "for later"})...)
		if r.code != 2 || !strings.Contains(r.stderr, "TIMED_OUT") {
			t.Fatalf("exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
		}
		_, states := byID(parseText(t, r.stdout))
		for _, st := range states {
			if fmt.Sprint(st) != "[IN_TRANSIT DELIVERED_TO_SERVER TIMED_OUT]" {
				t.Fatalf("states %v", st)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		type line struct {
			ID        *string  `json:"id"`
			State     *string  `json:"state"`
			ElapsedMS *float64 `json:"elapsed_ms"`
			Condition string   `json:"condition"`
			Error     string   `json:"error"`
		}
		parse := func(out string) []line {
			var lines []line
			for s := range strings.Lines(out) {
				var l line
				if err := json.Unmarshal([]byte(s), &l); err != nil {
					t.Fatalf("line %q: %v", s, err)
				}
				if l.ID == nil || *l.ID == "" || l.State == nil || l.ElapsedMS == nil || *l.ElapsedMS < 0 {
					t.Fatalf("line %q lacks id, state or elapsed_ms", s)
				}
				if _, ok := tracking.ParseState(*l.State); !ok {
					t.Fatalf("line %q: unknown state", s)
				}
				lines = append(lines, l)
			}
			return lines
		}
		r := send(t, "first\nsecond\n", nil, args(plain, to("bob"), []string{"-json", "-wait", "seen"})...)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		seen := map[string]bool{}
		for _, l := range parse(r.stdout) {
			if *l.State == "SEEN_BY_RECIPIENT" {
				seen[*l.ID] = true
			}
		}
		if len(seen) != 2 {
			t.Fatalf("want both messages seen:\n%s", r.stdout)
		}

		r = send(t, "", nil, args(plain, []string{"-json", "-to", "nobody@" + srv.Domain(), "hello?"})...)
		lines := parse(r.stdout)
		last := lines[len(lines)-1]
		if r.code != 2 || *last.State != "ERROR" || last.Condition != "service-unavailable" || last.Error == "" {
			t.Fatalf("exit %d, want 2 and ERROR with condition and error\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("muc", func(t *testing.T) {
		r := send(t, "", nil, args(tls, []string{"-to", room, "-muc", "alice", "-wait", "seen", "standup?"})...)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		_, states := byID(parseText(t, r.stdout))
		for _, st := range states {
			if !reached(st, tracking.SeenByRecipient) {
				t.Fatalf("states %v", st)
			}
		}
		bob.expect(t, "standup?")
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	webAddr := web.Listener.Addr().String()
	jidArg := []string{"-jid", srv.JID("alice").String()}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string // in the one-line message
	}{
		{"no jid", nil, args(to("bob"), []string{"x"}), "-jid"},
		{"no recipient", nil, args(jidArg, []string{"x"}), "-to"},
		{"bad wait", []string{"XMPP_PASSWORD=x"}, args(jidArg, to("bob"), []string{"-wait", "read", "x"}), "-wait"},
		{"bad flag", nil, []string{"-frobnicate"}, "flag provided but not defined"},
		{"no password", []string{"XMPP_PASSWORD="}, args(jidArg, to("bob"), []string{"x"}), "XMPP_PASSWORD"},
		{"wrong password", []string{"XMPP_PASSWORD=wrong"}, args(jidArg, to("bob"), []string{"-addr", srv.Addr(), "-plaintext", "x"}), "password"},
		{"unreachable", []string{"XMPP_PASSWORD=x"}, args(jidArg, to("bob"), []string{"-addr", closed, "-plaintext", "x"}), "-addr"},
		{"untrusted certificate", []string{"XMPP_PASSWORD=x"}, args(jidArg, to("bob"), []string{"-addr", srv.Addr(), "x"}), "-insecure"},
		{"-addr does not resolve", []string{"XMPP_PASSWORD=x"}, args(jidArg, to("bob"), []string{"-addr", "no..such.host:5222", "x"}), "check the -addr host"},
		{"not an XMPP server", []string{"XMPP_PASSWORD=x"}, args(jidArg, to("bob"), []string{"-addr", webAddr, "x"}), "check the port in -addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, "", tc.env, tc.args...)
			if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want 1 and %q on stderr\nstdout: %s\nstderr: %s", r.code, tc.want, r.stdout, r.stderr)
			}
			if tc.name != "bad flag" && strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("want one line on stderr, got:\n%s", r.stderr)
			}
		})
	}
}

func TestExampleDemo(t *testing.T) {
	if err := testserver.Available(testserver.Prosody); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("prosody is required under CI=true: %v", err)
		}
		t.Skipf("prosody not available: %v", err)
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "demo"))
	cmd.Env = append(os.Environ(), gorace)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("demo: %v\n%s%s", err, out, stderr.String())
	}
	text := string(out)
	// Each step ends in the state it narrates, in this order.
	steps := []string{"SEEN_BY_RECIPIENT", "ERROR", "service-unavailable", "TIMED_OUT", "SEEN_BY_RECIPIENT", "Stopped Prosody and removed "}
	rest := text
	for _, s := range steps {
		i := strings.Index(rest, s)
		if i < 0 {
			t.Fatalf("%q missing or out of order in:\n%s", s, text)
		}
		rest = rest[i+len(s):]
	}
	dir := strings.TrimSuffix(strings.TrimSpace(rest), ".")
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the server directory %q is still there: %v", dir, err)
	}
	if testing.Verbose() {
		io.WriteString(os.Stdout, text)
	}
}

// TestExampleDemoHelp: -h prints the usage and exits 0 without installing
// or starting anything (with an empty PATH it could do neither).
func TestExampleDemoHelp(t *testing.T) {
	cmd := exec.Command(bin(t, "demo"), "-h")
	cmd.Env = append(os.Environ(), gorace, "PATH=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo -h: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "usage: demo") || !strings.Contains(string(out), "-port") || strings.Contains(string(out), "xmpptrack demo:") {
		t.Fatalf("want the usage and nothing else:\n%s", out)
	}
}

// TestExampleDemoInterrupt: -port chooses the server's port, and SIGINT or
// SIGTERM stops Prosody and removes its directory.
func TestExampleDemoInterrupt(t *testing.T) {
	if err := testserver.Available(testserver.Prosody); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("prosody is required under CI=true: %v", err)
		}
		t.Skipf("prosody not available: %v", err)
	}
	serverLine := regexp.MustCompile(`^  server  Prosody on (\S+), files in (\S+) \(`)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			_, port, _ := net.SplitHostPort(addr)

			ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin(t, "demo"), "-port", port)
			cmd.Env = append(os.Environ(), gorace)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var gotAddr, dir string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if m := serverLine.FindStringSubmatch(sc.Text()); m != nil {
					gotAddr, dir = m[1], m[2]
					break
				}
			}
			if dir == "" {
				cmd.Wait()
				t.Fatalf("the demo did not start its server:\n%s", stderr.String())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, out)
			err = cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "interrupted") {
				t.Errorf("demo: %v, want exit status 1 and \"interrupted\"\n%s", err, stderr.String())
			}
			if gotAddr != addr {
				t.Errorf("server on %s, want -port's %s", gotAddr, addr)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the server directory %q is still there: %v", dir, err)
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Errorf("the server still accepts connections on %s", addr)
			}
		})
	}
}
