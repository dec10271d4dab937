package login

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
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

// probeConn is the plaintext connection under the stream. It keeps the
// first bytes the server sent, to tell a peer that does not speak XMPP from
// one that broke off, and ends each stream header it writes with a
// newline: whitespace that an XMPP server ignores, and that makes a
// line-based server (HTTP, SMTP ...) answer at once instead of waiting for
// the end of its first line.
//
// first is written only by the goroutine that reads the stream, and read
// only by Dial after negotiation failed: no lock.
type probeConn struct {
	net.Conn
	first      []byte
	beforeRead func() // Config.BeforeRead
}

const probeLen = 32

func (p *probeConn) Read(b []byte) (int, error) {
	if p.beforeRead != nil {
		p.beforeRead()
	}
	n, err := p.Conn.Read(b)
	if k := probeLen - len(p.first); k > 0 && n > 0 {
		p.first = append(p.first, b[:min(k, n)]...)
	}
	return n, err
}

func (p *probeConn) Write(b []byte) (int, error) {
	if !isStreamHeader(b) {
		return p.Conn.Write(b)
	}
	n, err := p.Conn.Write(append(b[:len(b):len(b)], '\n'))
	return min(n, len(b)), err
}

// isStreamHeader reports whether b is a stream header as mellium writes it:
// in one write, from the XML declaration to the '>' of <stream:stream>.
func isStreamHeader(b []byte) bool {
	return bytes.HasPrefix(b, []byte("<?xml")) && bytes.HasSuffix(b, []byte(">")) && bytes.Contains(b, []byte("<stream:stream "))
}
