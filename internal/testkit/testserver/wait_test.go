package testserver

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestListenerOwned(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if _, ok := listeningInodes(port); !ok {
		t.Skip("no /proc/net/tcp")
	}
	if !listenerOwned(port, os.Getpid()) {
		t.Error("our own listener is not ours")
	}
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Skip(err)
	}
	defer func() {
		other.Process.Kill()
		other.Wait()
	}()
	if listenerOwned(port, other.Process.Pid) {
		t.Error("our listener belongs to another process")
	}
}

func TestReservePortUnique(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := reservePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	for p := range seen {
		releasePort(p)
	}
}

// TestPortTaken starts each server on a port another listener holds: the
// start must fail with errPortTaken (Launch then retries on another port).
func TestPortTaken(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			if err := Available(kind); err != nil {
				t.Skip(err)
			}
			l, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() { // accept and drop, like a foreign server would
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			f, _ := newFlavor(kind)
			bin, _ := f.binary()
			s := &Server{kind: kind, flavor: f, bin: bin, accounts: map[string]string{}, opts: Options{Logf: t.Logf}}
			defer s.Stop()
			if err := s.setup(); err != nil {
				t.Fatal(err)
			}
			s.port = l.Addr().(*net.TCPAddr).Port
			if err := f.configure(s); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err = s.startProcess(ctx)
			if !errors.Is(err, errPortTaken) {
				t.Fatalf("startProcess = %v, want errPortTaken", err)
			}
			s.port = 0 // not ours to release
		})
	}
}

// TestLogWatch: the check for a failed bind reads only what the current run
// added to the log, and matches a line written in two pieces.
func TestLogWatch(t *testing.T) {
	s := &Server{kind: Prosody, flavor: prosody{}, dir: t.TempDir()}
	name := filepath.Join(s.dir, "prosody.log")
	write := func(text string) {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(text)
		f.Close()
	}
	write("portmanager error Failed to open server port 1 on 127.0.0.1, this port is in use by another application\n")
	p := &process{out: &tail{max: 1 << 10}}
	w := s.watchLogs()
	if w.bindFailed(p) {
		t.Fatal("an earlier run's failure counted")
	}
	write("startup info Hello\nportmanager error Failed to open ser")
	if w.bindFailed(p) {
		t.Fatal("half a line matched")
	}
	write("ver port 2 on 127.0.0.1\n")
	if !w.bindFailed(p) {
		t.Fatal("a failure written in two pieces was not seen")
	}
	w = s.watchLogs()
	p.out.Write([]byte("Address already in use\n"))
	if !w.bindFailed(p) {
		t.Fatal("a failure in the process's output was not seen")
	}
}
