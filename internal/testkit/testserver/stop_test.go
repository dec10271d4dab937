//go:build unix

package testserver

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// stubborn is a fake server: a shell that ignores SIGTERM and sleeps,
// never opening its port, with an hour of grace between SIGTERM and
// SIGKILL. cmd is its last command.
type stubborn struct{ cmd *exec.Cmd }

func (*stubborn) binary() (string, error)                                        { return "/bin/sh", nil }
func (*stubborn) prepareDir(*Server) error                                       { return nil }
func (*stubborn) configure(*Server) error                                        { return nil }
func (*stubborn) preRegister(*Server, map[string]string) error                   { return nil }
func (*stubborn) postRegister(context.Context, *Server, map[string]string) error { return nil }
func (*stubborn) register(context.Context, *Server, string, string) error        { return nil }
func (*stubborn) termTarget(pid, _ int) int                                      { return pid }
func (*stubborn) signal() syscall.Signal                                         { return syscall.SIGTERM }
func (*stubborn) grace() time.Duration                                           { return time.Hour }
func (*stubborn) logFiles(*Server) []string                                      { return nil }
func (*stubborn) portTaken(string) bool                                          { return false }
func (*stubborn) release()                                                       {}

func (f *stubborn) command(_ *Server, bin string) *exec.Cmd {
	// An ignored signal stays ignored across exec: sleep ignores SIGTERM.
	f.cmd = exec.Command(bin, "-c", "trap '' TERM; exec sleep 3600")
	return f.cmd
}

// TestFailedStartStopBounded: the stop of a failed start is bounded by
// StartTimeout. A server that ignores SIGTERM and whose start fails (its
// port never opens; another process holds its fixed port) is killed,
// SIGKILL to its group, when StartTimeout ends, not after its grace
// period (an hour here), and Launch returns the start's error.
func TestFailedStartStopBounded(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name string
		port int
		want error
	}{
		{"port never opens", 0, context.DeadlineExceeded},
		{"port taken", taken.Addr().(*net.TCPAddr).Port, errPortTaken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &stubborn{}
			opts := Options{Port: tc.port, StartTimeout: 500 * time.Millisecond, Logf: t.Logf}
			done := make(chan error, 1)
			go func() {
				s, err := launchFlavor(t.Context(), "stubborn", f, opts, reservePort)
				if s != nil {
					s.Stop()
				}
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second): // not a measure: without the bound it takes the hour of grace
				t.Fatalf("Launch still runs 30 s after its start-up bound of %v", opts.StartTimeout)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Launch: %v, want %v", err, tc.want)
			}
			if f.cmd == nil || f.cmd.ProcessState == nil {
				t.Fatal("the fake server was not started and reaped")
			}
			if ws, _ := f.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Errorf("the fake server ended with %v, want SIGKILL", f.cmd.ProcessState)
			}
		})
	}
}
