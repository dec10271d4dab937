package interop

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Kind names a Python XMPP library.
type Kind string

// The supported libraries.
const (
	// Slixmpp is python3-slixmpp (1.8.3 in Debian 12).
	Slixmpp Kind = "slixmpp"
	// Aioxmpp is python3-aioxmpp (0.13.3 in Debian 12).
	Aioxmpp Kind = "aioxmpp"
)

// ErrUnavailable means /usr/bin/python3 or the library's module is missing.
var ErrUnavailable = errors.New("interop: peer unavailable")

// Available reports why peers of kind cannot run here, or nil if they can.
// It looks the module up without importing it (fast).
func Available(kind Kind) error {
	switch kind {
	case Slixmpp, Aioxmpp:
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrUnavailable, kind)
	}
	if _, err := os.Stat(Python); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	probe := "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 3)"
	cmd := exec.Command(Python, "-c", probe, string(kind))
	cmd.Env = pythonEnv(nil)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 3 {
			return fmt.Errorf("%w: %s has no module %s (Debian: apt-get install python3-%s)", ErrUnavailable, Python, kind, kind)
		}
		return fmt.Errorf("%w: %s: %w: %s", ErrUnavailable, Python, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// pythonEnv returns the environment of a peer: the caller's, without
// variables that would point Debian's interpreter at another installation,
// plus extra.
func pythonEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV":
			continue
		}
		if strings.HasPrefix(name, "XT_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1")
	return append(env, extra...)
}

// requirePeer skips or fails t when kind is unavailable (see Available).
func requirePeer(t interface {
	Helper()
	Skipf(string, ...any)
	Fatalf(string, ...any)
}, kind Kind) {
	t.Helper()
	if err := Available(kind); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("interop: %s is required under CI=true: %v", kind, err)
		}
		t.Skipf("interop: %s not available: %v", kind, err)
	}
}
