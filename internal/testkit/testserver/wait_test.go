package testserver

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
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
