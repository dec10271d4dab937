package login

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
)

// ErrConnect: the server could not be reached or talked to: DNS, TCP, the
// TLS handshake or the certificate failed, the peer does not speak XMPP, it
// closed the connection or broke the protocol before the session was
// ready, or ctx's deadline passed first. ErrAuth, ErrNoTLS,
// ErrNoChannelBinding, no SASL mechanism in common, configuration mistakes
// and a canceled ctx are not ErrConnect: retrying the same thing would not
// help, or was not wanted.
var ErrConnect = errors.New("xmpptrack: cannot connect")

// ErrNotXMPP: what answered at the address is not an XMPP server (an HTTP
// server, say), or with DirectTLS not a TLS one. Such errors match
// ErrConnect as well.
var ErrNotXMPP = errors.New("xmpptrack: the server does not speak XMPP")

// ConnectError is an ErrConnect failure. It matches ErrConnect (and
// ErrNotXMPP when NotXMPP is set) with errors.Is; Unwrap gives the cause.
type ConnectError struct {
	Addr    string // host:port, or the JID's domain when it was looked up
	NotXMPP bool
	Err     error
}

func (e *ConnectError) Error() string {
	if e.NotXMPP {
		return fmt.Sprintf("xmpptrack: %s does not speak XMPP: %v", e.Addr, e.Err)
	}
	return fmt.Sprintf("xmpptrack: cannot connect to %s: %v", e.Addr, e.Err)
}

// Unwrap returns ErrConnect, ErrNotXMPP if set, and the cause.
func (e *ConnectError) Unwrap() []error {
	if e.NotXMPP {
		return []error{ErrConnect, ErrNotXMPP, e.Err}
	}
	return []error{ErrConnect, e.Err}
}

// Failed classifies a failure that ended a login after Dial returned (the
// connection ended, or ctx ended, before the session was ready for use) as
// Dial classifies its own (see Dial).
func (c *Config) Failed(ctx context.Context, err error) error {
	return c.classify(ctx, nil, err)
}

// classify turns a failure of Dial into its documented kind. probe is the
// plaintext connection, nil if none was opened or it runs TLS from the
// start.
func (c *Config) classify(ctx context.Context, probe *probeConn, err error) error {
	switch {
	case errors.Is(err, ErrAuth), errors.Is(err, ErrNoTLS), errors.Is(err, ErrNoChannelBinding):
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return err
	case errors.Is(err, errNoMechanism):
		return fmt.Errorf("xmpptrack: dial: %w", err)
	}
	if ctx.Err() != nil {
		// Whatever the login returned (an i/o timeout from the deadline,
		// usually), the context's end is the reason.
		if !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return fmt.Errorf("xmpptrack: dial: %w", err)
		}
	}
	addr := c.Addr
	if addr == "" {
		addr = c.JID.Domainpart()
	}
	ce := &ConnectError{Addr: addr, Err: err}
	var rh tls.RecordHeaderError
	switch {
	case probe != nil && len(probe.first) > 0 && !looksLikeXML(probe.first):
		ce.NotXMPP = true
		line, _, _ := bytes.Cut(probe.first, []byte("\n"))
		ce.Err = fmt.Errorf("it answered %q: %w", bytes.TrimSpace(line), err)
	case errors.As(err, &rh):
		ce.NotXMPP = true // direct TLS to a port that does not speak TLS
	case probe != nil && len(probe.first) == 0 && ctx.Err() != nil:
		ce.Err = fmt.Errorf("no answer to the stream header: %w", err)
	}
	return ce
}

// looksLikeXML reports whether the first bytes of a stream can start an XML
// document (a BOM, whitespace or '<').
func looksLikeXML(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) == 0 || b[0] == '<'
}

// probeConn is the network connection under the stream, under TLS when
// there is TLS (direct TLS that Dial sets up itself, or STARTTLS). It
// calls Config.BeforeRead before each read, and a read error makes it the
// end of the connection (see lose).
//
// Without direct TLS it also keeps the first bytes the server sent, to
// tell a peer that does not speak XMPP from one that broke off, and ends
// each stream header it writes with a newline: whitespace that an XMPP
// server ignores, and that makes a line-based server (HTTP, SMTP ...)
// answer at once instead of waiting for the end of its first line.
//
// first is written only by the goroutine that reads the stream, and read
// only by Dial after negotiation failed: no lock.
type probeConn struct {
	net.Conn
	probe      bool // keep first and end stream headers with a newline (no direct TLS)
	first      []byte
	beforeRead func() // Config.BeforeRead
	lost       atomic.Pointer[LostError]
	plain      atomic.Pointer[tees] // copies the stream while no TLS runs over it
}

const probeLen = 32

func (p *probeConn) Read(b []byte) (int, error) {
	if p.beforeRead != nil {
		p.beforeRead()
	}
	n, err := p.Conn.Read(b)
	if k := probeLen - len(p.first); p.probe && k > 0 && n > 0 {
		p.first = append(p.first, b[:min(k, n)]...)
	}
	if err != nil {
		p.lose(err)
	}
	if t := p.plain.Load(); t != nil {
		return t.read(b, n, err)
	}
	return n, err
}

// lose ends the connection after a read failed (the peer closed or reset
// it, a deadline passed, it was closed): it is closed at once, and every
// later write fails with a *LostError without writing anything.
//
// mellium's Session.Serve answers a read error, and the end of the input,
// by writing a stream error and </stream:stream> on its way out. Written
// to a connection whose peer has only half-closed it, that close would
// reach the server, and a server ends a stream management session that
// was closed cleanly (XEP-0198: such a stream cannot be resumed; Prosody
// revokes the resumption token on a received </stream:stream> or stream
// error, ejabberd does not keep the session for resumption), so the next
// connection could not resume it. A lost connection is therefore dropped,
// never closed by the protocol. A </stream:stream> the server sent is
// not a read error: mellium answers it with its own, as it should. The end
// of the input above TLS (a close_notify without </stream:stream>, as a
// TLS-terminating proxy passes on a half-close) is lost the same way, by
// the tlsInput over this connection.
func (p *probeConn) lose(err error) {
	if p.lost.CompareAndSwap(nil, &LostError{Err: err}) {
		p.Conn.Close()
	}
}

func (p *probeConn) Write(b []byte) (int, error) {
	if e := p.lost.Load(); e != nil {
		return 0, e
	}
	var n int
	var err error
	if !p.probe || !isStreamHeader(b) {
		n, err = p.Conn.Write(b)
	} else {
		n, err = p.Conn.Write(append(b[:len(b):len(b)], '\n'))
		n = min(n, len(b))
	}
	if t := p.plain.Load(); t != nil {
		return t.wrote(b, n, err)
	}
	return n, err
}

// LostError is what a write on a connection returns once a read on it
// failed: nothing was written, and the connection is closed (see
// probeConn.lose). Err is the read's error.
type LostError struct{ Err error }

func (e *LostError) Error() string { return "xmpptrack: connection lost: " + e.Err.Error() }

func (e *LostError) Unwrap() error { return e.Err }

// isStreamHeader reports whether b is a stream header as mellium writes it:
// in one write, from the XML declaration to the '>' of <stream:stream>.
func isStreamHeader(b []byte) bool {
	return bytes.HasPrefix(b, []byte("<?xml")) && bytes.HasSuffix(b, []byte(">")) && bytes.Contains(b, []byte("<stream:stream "))
}
