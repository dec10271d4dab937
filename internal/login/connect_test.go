package login

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestDialConnectErrors: every way of failing to reach or talk to the server
// matches ErrConnect, with its cause reachable; the other failures do not.
func TestDialConnectErrors(t *testing.T) {
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	defer httpSrv.Close()
	httpAddr := strings.TrimPrefix(httpSrv.URL, "http://")
	untrusted := func(t *testing.T) string {
		return scripted(t, func(conn net.Conn, _ *xml.Decoder) error {
			tc := tls.Server(conn, testCertificate(t))
			tc.Handshake() // the client refuses the certificate
			return nil
		})
	}
	tests := []struct {
		name    string
		cfg     func(t *testing.T) Config
		notXMPP bool
		cause   any // a pointer for errors.As, nil if none
		is      error
	}{
		{
			name:  "name does not resolve",
			cfg:   func(*testing.T) Config { return Config{Addr: "no..such.host:5222"} },
			cause: new(*net.DNSError),
		},
		{
			name:  "connection refused",
			cfg:   func(t *testing.T) Config { return Config{Addr: closedPort(t)} },
			cause: new(*net.OpError),
		},
		{
			name: "untrusted certificate",
			cfg: func(t *testing.T) Config {
				return Config{Addr: untrusted(t), DirectTLS: true, TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}}
			},
			cause: new(*tls.CertificateVerificationError),
		},
		{
			name:    "an HTTP server",
			cfg:     func(*testing.T) Config { return Config{Addr: httpAddr} },
			notXMPP: true,
		},
		{
			name:    "an HTTP server, plaintext",
			cfg:     func(*testing.T) Config { return Config{Addr: httpAddr, AllowPlaintext: true} },
			notXMPP: true,
		},
		{
			name:    "direct TLS to a server without TLS",
			cfg:     func(*testing.T) Config { return Config{Addr: httpAddr, DirectTLS: true} },
			notXMPP: true,
			cause:   new(tls.RecordHeaderError),
		},
		{
			name: "the server hangs up after its header",
			cfg: func(t *testing.T) Config {
				return Config{Addr: scripted(t, func(conn net.Conn, d *xml.Decoder) error {
					if _, err := io.WriteString(conn, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>"); err != nil {
						return err
					}
					return conn.Close()
				}), AllowPlaintext: true}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c := tc.cfg(t)
			c.JID, c.Password = testJID, "pw"
			_, err := Dial(ctx, c)
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrConnect) {
				t.Fatalf("error does not match ErrConnect")
			}
			if errors.Is(err, ErrNotXMPP) != tc.notXMPP {
				t.Errorf("errors.Is(err, ErrNotXMPP) = %v, want %v", !tc.notXMPP, tc.notXMPP)
			}
			if tc.cause != nil && !errors.As(err, tc.cause) {
				t.Errorf("the cause %T is not reachable", tc.cause)
			}
			if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
				t.Errorf("the login waited for the context's deadline")
			}
			if errors.Is(err, ErrAuth) {
				t.Errorf("error matches ErrAuth")
			}
		})
	}
}

// TestDialContextErrors: a deadline that passes during the login is a
// connection failure (the server did not answer in time) and matches the
// context's error; a cancellation only matches context.Canceled.
func TestDialContextErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cancel    bool
		want      error
		isConnect bool
	}{
		{"deadline", false, context.DeadlineExceeded, true},
		{"canceled", true, context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			read := make(chan struct{})
			addr := scripted(t, func(conn net.Conn, d *xml.Decoder) error {
				d.Token() // the client's header; never answer
				close(read)
				io.Copy(io.Discard, conn)
				return nil
			})
			if tc.cancel {
				go func() { <-read; cancel() }()
			} else {
				var cancel2 context.CancelFunc
				ctx, cancel2 = context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel2()
			}
			_, err := Dial(ctx, Config{JID: testJID, Password: "pw", Addr: addr, AllowPlaintext: true})
			t.Logf("error: %v", err)
			if !errors.Is(err, tc.want) {
				t.Errorf("error does not match %v", tc.want)
			}
			if errors.Is(err, ErrConnect) != tc.isConnect {
				t.Errorf("errors.Is(err, ErrConnect) = %v, want %v", !tc.isConnect, tc.isConnect)
			}
			if errors.Is(err, ErrNotXMPP) {
				t.Error("error matches ErrNotXMPP")
			}
		})
	}
}

// TestProbeConnBeforeRead: Config.BeforeRead runs before every read of
// the connection, before the read blocks.
func TestProbeConnBeforeRead(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	calls := 0
	p := &probeConn{Conn: a, beforeRead: func() { calls++ }}
	go b.Write([]byte("<stream"))
	buf := make([]byte, 16)
	if _, err := p.Read(buf); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("BeforeRead ran %d times for one read", calls)
	}
	b.Close()
	p.Read(buf)
	if calls != 2 {
		t.Errorf("BeforeRead ran %d times for two reads", calls)
	}
}

// TestProbeConnLost: once a read fails (here the peer half-closed the
// connection and reads on), the connection is closed and a write fails
// with a *LostError that wraps the read's error, writing nothing.
func TestProbeConnLost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a client that never drops it fails the test
		b, err := io.ReadAll(c)
		if err != nil {
			b = append(b, "(not dropped: "+err.Error()+")"...)
		}
		got <- b
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p := &probeConn{Conn: conn}
	if _, err := p.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("Read: %v, want io.EOF", err)
	}
	_, err = p.Write([]byte("</stream:stream>"))
	var lost *LostError
	if !errors.As(err, &lost) || !errors.Is(err, io.EOF) {
		t.Errorf("Write after the loss: %v, want a *LostError wrapping io.EOF", err)
	}
	if b := <-got; len(b) != 0 {
		t.Errorf("the peer read %q after the loss", b)
	}
}
