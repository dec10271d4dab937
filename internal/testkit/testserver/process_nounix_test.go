//go:build !unix

package testserver

import (
	"errors"
	"os"
	"runtime"
	"testing"
)

// processAlive reports whether a process pid can be opened.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}

// groupGone fails: no server runs here, so no test gets a process group
// to check (see TestUnsupported).
func groupGone(t *testing.T, pgid int) {
	t.Helper()
	t.Errorf("process group %d: this system (%s) has none, and Launch starts no server here", pgid, runtime.GOOS)
}

// TestUnsupported: off Unix every way to start a server says why it
// cannot, with an error that wraps errors.ErrUnsupported, so that Start
// and StartPostgres skip with that reason (or fail under CI=true).
func TestUnsupported(t *testing.T) {
	for _, kind := range Kinds() {
		if err := Available(kind); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Available(%s) = %v, want errors.ErrUnsupported", kind, err)
		}
		if s, err := Launch(t.Context(), kind, Options{}); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("Launch(%s) = %v, %v, want errors.ErrUnsupported", kind, s, err)
		}
	}
	if err := PostgresAvailable(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("PostgresAvailable() = %v, want errors.ErrUnsupported", err)
	}
	if p, err := LaunchPostgres(t.Context(), PostgresOptions{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("LaunchPostgres() = %v, %v, want errors.ErrUnsupported", p, err)
	}
}
