//go:build linux

package sm

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type embedConn struct{ net.Conn }

// TestStuckWriteBound: the State leaves a stuck write to the kernel on a
// TCP connection with TCP_USER_TIMEOUT, also under TLS, and bounds it
// itself on one without and on anything that is not a socket.
func TestStuckWriteBound(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tcp, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	st := New(Config{AckTimeout: time.Second})
	check := func(what string, c net.Conn, want time.Duration) {
		t.Helper()
		if got := time.Duration(st.stuckWriteBound(c)); got != want {
			t.Errorf("%s: write bound %v, want %v", what, got, want)
		}
	}
	check("pipe", p1, stuckWriteFactor*time.Second)
	check("TCP without TCP_USER_TIMEOUT", tcp, stuckWriteFactor*time.Second)
	raw, err := tcp.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 35000)
	})
	if err != nil {
		t.Fatal(err)
	}
	check("TCP with TCP_USER_TIMEOUT", tcp, 0)
	check("TLS over it", tls.Client(tcp, &tls.Config{}), 0)
	// As mellium's tee wrapper (a value) and the client's probe (a pointer)
	// hold it.
	check("embedded", embedConn{tls.Client(tcp, &tls.Config{})}, 0)
	check("embedded by pointer", &embedConn{tcp}, 0)
	check("embedded, nil", embedConn{}, stuckWriteFactor*time.Second)
	st = New(Config{AckTimeout: -1})
	check("negative AckTimeout", p1, 0)
}
