//go:build unix

package testserver

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// fakeServer is a server for the stop tests: sleep (or, with listen, a
// Python process that listens on the server's port; with slowStop, a shell
// that exits 0 0.3 s after SIGTERM), with an hour of grace between the stop
// signal and SIGKILL. With SIGWINCH as its stop signal, whose default
// action is to ignore it, it ignores the stop signal from its start on.
// With blockAccounts, account creation waits for the start-up bound to
// end. cmd is its last command.
type fakeServer struct {
	stopSignal    syscall.Signal
	listen        bool
	slowStop      bool
	blockAccounts bool
	cmd           *exec.Cmd
}

func (*fakeServer) binary() (string, error)                                 { return exec.LookPath("sleep") }
func (*fakeServer) prepareDir(*Server) error                                { return nil }
func (*fakeServer) configure(*Server) error                                 { return nil }
func (*fakeServer) preRegister(*Server, map[string]string) error            { return nil }
func (*fakeServer) register(context.Context, *Server, string, string) error { return nil }
func (*fakeServer) termTarget(pid, _ int) int                               { return pid }
func (*fakeServer) grace() time.Duration                                    { return time.Hour }
func (*fakeServer) logFiles(*Server) []string                               { return nil }
func (*fakeServer) portTaken(string) bool                                   { return false }
func (*fakeServer) release()                                                {}
func (f *fakeServer) signal() syscall.Signal                                { return f.stopSignal }

func (f *fakeServer) postRegister(ctx context.Context, _ *Server, _ map[string]string) error {
	if f.blockAccounts {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeServer) command(s *Server, bin string) *exec.Cmd {
	f.cmd = exec.Command(bin, "3600")
	if f.slowStop {
		f.cmd = exec.Command("/bin/sh", "-c", "trap 'sleep 0.3; exit 0' TERM; sleep 3600 & wait")
	}
	if f.listen {
		f.cmd = exec.Command("/usr/bin/python3", "-c", `import socket, sys, time
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen()
time.sleep(3600)`, strconv.Itoa(s.port))
	}
	return f.cmd
}

// TestFailedStartStopBounded: the stop of a failed start is bounded by
// StartTimeout (plus stopFloor). A server that ignores its stop signal and
// whose start fails (its port never opens; another process holds its fixed
// port; its accounts are not created in time) is killed, SIGKILL to its
// group, when StartTimeout ends, not after its grace period (an hour
// here), and Launch returns the start's error. One that obeys its stop
// signal, slowly, gets the time to: stopFloor, the bound having ended.
func TestFailedStartStopBounded(t *testing.T) {
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name   string
		fake   *fakeServer
		port   int
		want   error
		endSig syscall.Signal
	}{
		{"port never opens", &fakeServer{stopSignal: syscall.SIGWINCH}, 0, context.DeadlineExceeded, syscall.SIGKILL},
		{"port taken", &fakeServer{stopSignal: syscall.SIGWINCH}, takenPort, errPortTaken, syscall.SIGKILL},
		{"accounts not created", &fakeServer{stopSignal: syscall.SIGWINCH, listen: true, blockAccounts: true}, 0, context.DeadlineExceeded, syscall.SIGKILL},
		{"stops on SIGTERM", &fakeServer{stopSignal: syscall.SIGTERM, slowStop: true}, 0, context.DeadlineExceeded, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := listeningInodes(takenPort); tc.port != 0 && !ok {
				t.Skip("a port taken by another process is seen through /proc only")
			}
			if tc.fake.listen {
				requirePython(t)
			}
			opts := Options{Port: tc.port, StartTimeout: 500 * time.Millisecond, Logf: t.Logf}
			done := make(chan error, 1)
			go func() {
				s, err := launchFlavor(t.Context(), "fake", tc.fake, opts, reservePort)
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
			if tc.fake.cmd == nil || tc.fake.cmd.ProcessState == nil {
				t.Fatal("the fake server was not started and reaped")
			}
			ws, _ := tc.fake.cmd.ProcessState.Sys().(syscall.WaitStatus)
			if tc.endSig == 0 && (!ws.Exited() || ws.ExitStatus() != 0) || tc.endSig != 0 && (!ws.Signaled() || ws.Signal() != tc.endSig) {
				t.Errorf("the fake server ended with %v, want %v", tc.fake.cmd.ProcessState, map[bool]any{true: "exit status 0", false: tc.endSig}[tc.endSig == 0])
			}
		})
	}
}

// requirePython skips t without /usr/bin/python3, or fails it under CI=true.
func requirePython(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("/usr/bin/python3")
	require(t, "/usr/bin/python3", err)
}
