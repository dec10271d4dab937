package login

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// Config holds what Dial needs to open an authenticated, bound
// session. The zero value of every field but JID and Password is a safe
// default.
type Config struct {
	// JID is the account. Its resourcepart is ignored: the server assigns
	// the resource (mellium v0.23.0's bind cannot request one correctly).
	JID      jid.JID
	Password string

	// Addr is host:port. Empty means the JID's domain: its DNS SRV
	// records, then the domain on the standard ports (see targets).
	Addr string

	// TLSConfig verifies the server. Nil means the system roots with
	// ServerName = the JID's domain; a non-nil one is cloned and its
	// ServerName filled in when empty. Verification is never turned off here.
	TLSConfig *tls.Config

	// DirectTLS starts TLS before any XMPP (XEP-0368) instead of STARTTLS.
	DirectTLS bool

	// AllowPlaintext runs the whole stream unencrypted: STARTTLS is not
	// attempted even if offered, and SCRAM runs without TLS (PLAIN is never
	// used without TLS). For loopback tests and benchmarks only. It excludes
	// DirectTLS, TLSConfig and RequireChannelBinding.
	AllowPlaintext bool

	// RequireChannelBinding refuses to authenticate unless a SCRAM-*-PLUS
	// mechanism can run with a channel binding both sides support (see
	// mechanismsFor for the policy).
	RequireChannelBinding bool

	// TeeIn and TeeOut receive a copy of the stream as read and written,
	// above TLS (nil = none). They see the SASL exchange. The bytes passed
	// to their Write are only valid during the call (the connection's
	// buffers, and the callers' buffers for writes, are reused once it
	// returns): a tee copies what it keeps and never retains the slice.
	TeeIn, TeeOut io.Writer

	// WrapBind replaces resource binding (stream management passes
	// BindOrResume here). Nil means plain binding. The context its Negotiate
	// receives is never canceled: Dial enforces its own context
	// through the connection's deadline, so blocking reads and writes fail
	// when it ends.
	WrapBind func(xmpp.StreamFeature) xmpp.StreamFeature
	// BeforeRead, if set, is called before each read of the network
	// connection under the stream (under TLS), on the goroutine that
	// reads: when the reader has worked through all it read before.
	BeforeRead func()
	// DialConn, if set, opens the network connection instead of TCP to
	// Addr (tests: an in-memory connection); the rest is as with Addr.
	DialConn func(ctx context.Context) (net.Conn, error)

	// Logger receives debug records about TLS and mechanism choices.
	// Nil means silent.
	Logger *slog.Logger

	// resolver looks up DNS SRV records without Addr (tests); nil means
	// the system's.
	resolver *net.Resolver
}

// Check reports contradictory or incomplete configurations.
func (c *Config) Check() error {
	switch {
	case c.JID.Localpart() == "" || c.JID.Domainpart() == "":
		return fmt.Errorf("xmpptrack: dial: JID %q has no localpart or domain", c.JID)
	case c.Password == "":
		return errors.New("xmpptrack: dial: empty password")
	case c.AllowPlaintext && c.DirectTLS:
		return errors.New("xmpptrack: dial: AllowPlaintext and DirectTLS exclude each other")
	case c.AllowPlaintext && c.TLSConfig != nil:
		return errors.New("xmpptrack: dial: AllowPlaintext with a TLSConfig: the connection would not use it")
	case c.AllowPlaintext && c.RequireChannelBinding:
		return errors.New("xmpptrack: dial: RequireChannelBinding needs TLS, but AllowPlaintext is set")
	}
	return nil
}

// tlsConfig returns the configuration used for STARTTLS or direct TLS. It
// never modifies c.TLSConfig.
func (c *Config) tlsConfig() *tls.Config {
	var cfg *tls.Config
	if c.TLSConfig == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		cfg = c.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = c.JID.Domainpart()
	}
	if c.DirectTLS && len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"xmpp-client"} // XEP-0368
	}
	return cfg
}

// Dial connects, secures, authenticates and binds a client session
// as c says. On success the caller owns the session and its connection
// (Session.Conn): closing the session does not close the connection.
//
// Transport: TCP to c.Addr, or to the JID's domain's addresses (targets);
// then STARTTLS, or direct TLS with DirectTLS, or nothing with
// AllowPlaintext. The certificate is always verified.
//
// Authentication: SASL with the mechanisms of mechanismsFor, in this order of
// preference: SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-256,
// SCRAM-SHA-1, PLAIN (PLAIN and the -PLUS variants only over TLS).
//
// Fail-closed: the result is checked (mellium tries STARTTLS even if not
// advertised, RFC 7590, but skips that with tees of its own, and the
// client's tees once were): a session that is not encrypted (without
// AllowPlaintext), not authenticated or not bound is closed and reported
// as an error, whatever the server advertised.
//
// Errors start with "xmpptrack: " and keep their causes reachable with
// errors.Is/As. A failure to reach or talk to the server matches ErrConnect
// (and ErrNotXMPP when the peer does not speak XMPP); its cause is the net
// error (*net.OpError, *net.DNSError), the TLS or certificate error
// (*tls.CertificateVerificationError, x509 errors, tls.RecordHeaderError),
// the XML or stream error, and, when ctx's deadline passed, the context's
// error. When several addresses were tried, the error joins each one's,
// with its address; an attempt ended by its own share of the time, and a
// "not TLS" answer beside other failures, are kept as text only (neither
// is the whole Dial's cause). ErrAuth (an *AuthError), ErrNoTLS and ErrNoChannelBinding do not
// match ErrConnect, nor do no SASL mechanism in common, configuration
// mistakes (Check) and a canceled ctx (which matches context.Canceled).
func Dial(ctx context.Context, c Config) (*xmpp.Session, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	conn, probe, err := dialConn(ctx, &c)
	if err != nil {
		return nil, c.classify(ctx, nil, err)
	}
	// ctx bounds negotiation through the connection's deadline, set once
	// and held. mellium's own watch (given a cancelable context) sets a past
	// deadline and clears it at once, which can leave a blocked read waiting
	// and would race with this one; negotiateSession hides ctx's
	// cancellation from mellium for that reason.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	s, err := negotiateSession(ctx, conn, probe, &c)
	if !stop() && err == nil {
		// The context ended during negotiation: report it, whatever the
		// negotiation returned.
		s.Close()
		err = context.Cause(ctx)
	}
	if err != nil {
		conn.Close()
		return nil, c.classify(ctx, probe, err)
	}
	return s, nil
}

// keepAlive is the TCP keepalive of every connection: after 15 s without
// traffic the kernel probes every 5 s and gives up after 4 unanswered
// probes, so a dead peer is found within about 35 s even when stream
// management's own probes (sm.Config.IdleProbe) are off.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 4}

// userTimeout is TCP_USER_TIMEOUT on every connection (Linux only, where
// the kernel allows it): data written and not acknowledged by the peer's
// TCP for this long ends the connection, and so does a full receive
// window for this long (a server that takes no byte), even with
// sm.Config.AckTimeout disabled. Keepalive sends no probe while data waits to be
// acknowledged, so without it a write stuck on a frozen link would wait
// for the kernel's retransmission limit (about 15 minutes); stream
// management cannot tell such a write from a slow one (see "Dead
// connections" in package sm), the kernel can: a slow link's peer
// acknowledges bytes, however slowly.
const userTimeout = 35 * time.Second

// dialConn opens the transport: plain TCP, or TLS with DirectTLS. probe is
// the connection's probeConn when it runs without TLS from the start, for
// classify; nil otherwise.
//
// The TCP connection is always wrapped in a probeConn, under TLS where
// there is TLS, also without Addr: the client looks the domain's
// addresses up and dials them itself (see targets).
func dialConn(ctx context.Context, c *Config) (conn net.Conn, probe *probeConn, err error) {
	nd := net.Dialer{KeepAliveConfig: keepAlive, Control: setUserTimeout, Resolver: c.resolver}
	switch {
	case c.DialConn != nil:
		conn, err = c.DialConn(ctx)
	case c.Addr == "":
		return c.dialDomain(ctx, &nd)
	default:
		conn, err = nd.DialContext(ctx, "tcp", c.Addr)
	}
	if err != nil {
		return nil, nil, err
	}
	return c.wrap(ctx, conn, c.DirectTLS)
}

// perTarget bounds an attempt (dial and, with direct TLS, handshake) at
// one of a domain's addresses while others remain, so that one that takes
// no packet or never answers leaves time for the next. Only these fail
// over: a STARTTLS target that takes the connection and then says nothing
// keeps the rest of Dial's time (RFC 6120 asks fallback for connection
// failures only).
const perTarget = 10 * time.Second

// dialDomain dials the addresses of the JID's domain in turn (see
// targets) and returns the first connection that opens, and with direct
// TLS completes its handshake. An attempt with others after it gets
// perTarget at most, and no more than its share of ctx's time left. It
// stops when ctx ends. Its error joins every attempt's, each with its
// address.
func (c *Config) dialDomain(ctx context.Context, nd *net.Dialer) (net.Conn, *probeConn, error) {
	ts, err := targets(ctx, nd.Resolver, c.JID.Domainpart(), c.DirectTLS)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for i, t := range ts {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		var bound time.Duration
		if left := len(ts) - i; left > 1 {
			bound = perTarget
			if d, ok := ctx.Deadline(); ok {
				bound = min(bound, time.Until(d)/time.Duration(left))
			}
			tctx, cancel = context.WithTimeout(ctx, bound)
		}
		conn, probe, err := c.dialTarget(tctx, nd, t)
		bounded := tctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case err == nil:
			return conn, probe, nil
		case bounded: // not ctx's end: no context error to match
			errs = append(errs, fmt.Errorf("%s: no answer within %v (%v)", t.addr, bound.Round(time.Millisecond), err))
		default:
			errs = append(errs, fmt.Errorf("%s: %w", t.addr, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, joinAttempts(errs, len(ts))
}

// joinAttempts joins the errors of the attempts made at the domain's
// targets addresses. Unless every target was tried and said the peer does
// not speak TLS (a tls.RecordHeaderError), those are kept as text, so that
// the whole is not taken for a server that does not speak XMPP
// (ConnectError.NotXMPP) while another address failed otherwise or was
// never tried (ctx ended first).
func joinAttempts(errs []error, targets int) error {
	notTLS := 0
	for _, err := range errs {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) {
			notTLS++
		}
	}
	if notTLS > 0 && notTLS < targets {
		for i, err := range errs {
			var rh tls.RecordHeaderError
			if errors.As(err, &rh) {
				errs[i] = errors.New(err.Error())
			}
		}
	}
	return errors.Join(errs...)
}

// dialTarget dials one of a domain's addresses.
func (c *Config) dialTarget(ctx context.Context, nd *net.Dialer, t target) (net.Conn, *probeConn, error) {
	conn, err := nd.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, nil, err
	}
	return c.wrap(ctx, conn, t.tls)
}

// wrap puts conn under a probeConn, and with tlsFirst under TLS too once
// its handshake is done (closing conn if it fails; see tlsInput).
func (c *Config) wrap(ctx context.Context, conn net.Conn, tlsFirst bool) (net.Conn, *probeConn, error) {
	t := tees{in: c.TeeIn, out: c.TeeOut}
	p := &probeConn{Conn: conn, probe: !tlsFirst, beforeRead: c.BeforeRead}
	if !tlsFirst {
		p.plain.Store(&t) // until STARTTLS (see startTLS)
		return p, p, nil
	}
	tc := tls.Client(p, c.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return tlsInput{tc, p, t}, nil, nil
}

// tlsInput is a session's TLS connection over its probeConn. The end of
// its input (a close_notify) or any other error reading it ends the
// connection as a failed read of the probeConn does (see probeConn.lose):
// mellium would answer it with a stream error and </stream:stream>, and a
// server (or a TLS-terminating proxy) that ended TLS without
// </stream:stream> and reads on would end its stream management session.
// A </stream:stream> the server sent before is read first, and answered.
// It copies the stream to the tees.
type tlsInput struct {
	*tls.Conn
	probe *probeConn
	tees  tees
}

func (c tlsInput) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	switch {
	case err != nil && n > 0:
		// Data and the end together (TLS 1.2 reads a waiting close_notify
		// ahead): the data first, so that a </stream:stream> in it is
		// answered; TLS's error is sticky, the next read gets it.
		err = nil
	case err != nil:
		c.probe.lose(err)
	}
	return c.tees.read(b, n, err)
}

func (c tlsInput) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	return c.tees.wrote(b, n, err)
}

// tees are Config.TeeIn and TeeOut. The client copies the stream itself,
// in its probeConn while no TLS runs over it and then in its tlsInput,
// rather than through mellium's StreamConfig.TeeIn and TeeOut: mellium's
// tee connection reports the TLS state (ConnectionState, which the TLS
// check and channel binding read) of a *tls.Conn only, so it would hide a
// tlsInput's. They see what mellium's would: every byte of the stream
// above TLS as read and written (a write only once it succeeded), none of
// the TLS handshake. As with mellium's (io.TeeReader, io.MultiWriter), a
// tee's error is the read's or the write's (package sm's input limits end
// a connection so). A tee gets the very slice read into or written from,
// valid only during its Write (see Config.TeeIn).
type tees struct{ in, out io.Writer }

// read copies what a read of b returned (n, err) to in.
func (t *tees) read(b []byte, n int, err error) (int, error) {
	if t.in != nil && n > 0 {
		if _, werr := t.in.Write(b[:n]); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// wrote copies b to out once a write of it succeeded (n, err).
func (t *tees) wrote(b []byte, n int, err error) (int, error) {
	if t.out == nil || err != nil {
		return n, err
	}
	if _, werr := t.out.Write(b); werr != nil {
		return n, werr
	}
	return n, nil
}

// startTLS is mellium's STARTTLS feature, with its TLS connection read
// through a tlsInput.
func startTLS(cfg *tls.Config, probe *probeConn) xmpp.StreamFeature {
	f := xmpp.StartTLS(cfg)
	inner := f.Negotiate
	f.Negotiate = func(ctx context.Context, s *xmpp.Session, data any) (xmpp.SessionState, io.ReadWriter, error) {
		mask, rw, err := inner(ctx, s, data)
		if tc, ok := rw.(*tls.Conn); ok {
			plain := probe.plain.Swap(nil)
			if plain == nil { // never: wrap gives a plain probeConn its tees
				return 0, nil, errors.New("xmpptrack: STARTTLS on a connection without its tees")
			}
			// TLS starts with the next write: from here the stream is
			// copied above it.
			rw = tlsInput{tc, probe, *plain}
		}
		return mask, rw, err
	}
	return f
}

// negotiateSession runs stream negotiation on conn and checks the result.
// probe is conn, or nil if conn runs TLS from the start.
func negotiateSession(ctx context.Context, conn net.Conn, probe *probeConn, c *Config) (*xmpp.Session, error) {
	var state xmpp.SessionState
	var features []xmpp.StreamFeature
	_, directTLS := conn.(tlsInput)
	switch {
	case c.AllowPlaintext:
		// mellium only runs SASL on a session marked Secure; marking it is how
		// plaintext is allowed. It also keeps StartTLS from being attempted
		// (Prosody offers it again after authentication).
		state |= xmpp.Secure
	case directTLS:
		// mellium marks only a *tls.Conn Secure itself.
		state |= xmpp.Secure
	default:
		features = append(features, startTLS(c.tlsConfig(), probe))
	}
	a := &authenticator{
		ctx:       ctx,
		username:  c.JID.Localpart(),
		password:  c.Password,
		requireCB: c.RequireChannelBinding,
		logger:    c.Logger,
	}
	bind := xmpp.BindResource()
	if c.WrapBind != nil {
		bind = c.WrapBind(bind)
	}
	features = append(features, channelBindingFeature(), a.feature(), bind)

	origin := c.JID.Bare()
	s, err := xmpp.NewSession(context.WithoutCancel(ctx), origin.Domain(), origin, conn, state, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			// The tees are the client's own (see tees), not mellium's.
			return xmpp.StreamConfig{Features: features}
		}))
	if err != nil {
		if errors.Is(err, ErrAuth) || errors.Is(err, ErrNoChannelBinding) {
			return nil, err
		}
		if s != nil && !c.AllowPlaintext && s.State()&xmpp.Secure == 0 {
			_, sawSASL := s.Feature(nsSASL)
			_, sawTLS := s.Feature(nsStartTLS)
			if sawSASL && !sawTLS {
				return nil, fmt.Errorf("%w: the server does not offer STARTTLS; refusing to authenticate without TLS: %w", ErrNoTLS, err)
			}
		}
		return nil, fmt.Errorf("negotiating with %s: %w", c.JID.Domain(), err)
	}
	if err := checkSession(s, c); err != nil {
		s.Close()
		return nil, err
	}
	if c.Logger != nil {
		cs := s.ConnectionState()
		c.Logger.LogAttrs(ctx, slog.LevelDebug, "xmpptrack: session ready",
			slog.String("jid", s.LocalAddr().String()),
			slog.String("tls", tlsVersionName(cs.Version)),
			slog.String("mechanism", a.used.mechanism),
			slog.String("channel_binding", a.used.binding))
	}
	return s, nil
}

// checkSession verifies what negotiation must have achieved, whatever the
// server advertised.
func checkSession(s *xmpp.Session, c *Config) error {
	switch st := s.State(); {
	case !c.AllowPlaintext && (st&xmpp.Secure == 0 || s.ConnectionState().Version == 0):
		return fmt.Errorf("%w: the session was negotiated without TLS", ErrNoTLS)
	case st&xmpp.Authn == 0:
		return errors.New("the server ended negotiation without authentication")
	case s.LocalAddr().Resourcepart() == "":
		return errors.New("the server ended negotiation without binding a resource")
	}
	return nil
}

func tlsVersionName(v uint16) string {
	if v == 0 {
		return "none"
	}
	return tls.VersionName(v)
}
