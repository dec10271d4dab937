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
	// above TLS (nil = none). They see the SASL exchange.
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
// Fail-closed: configuring a tee makes mellium skip its RFC 7590 "STARTTLS
// even if not advertised" attempt, so the result is checked instead: a
// session that is not encrypted (without AllowPlaintext), not authenticated
// or not bound is closed and reported as an error, whatever the server
// advertised.
//
// Errors start with "xmpptrack: " and keep their causes reachable with
// errors.Is/As. A failure to reach or talk to the server matches ErrConnect
// (and ErrNotXMPP when the peer does not speak XMPP); its cause is the net
// error (*net.OpError, *net.DNSError), the TLS or certificate error
// (*tls.CertificateVerificationError, x509 errors, tls.RecordHeaderError),
// the XML or stream error, and, when ctx's deadline passed, the context's
// error. ErrAuth (an *AuthError), ErrNoTLS and ErrNoChannelBinding do not
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
	s, err := negotiateSession(ctx, conn, &c)
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

// dialDomain dials the addresses of the JID's domain in turn (see
// targets) and returns the first connection that opens, and with direct
// TLS completes its handshake; else the last error.
func (c *Config) dialDomain(ctx context.Context, nd *net.Dialer) (net.Conn, *probeConn, error) {
	ts, err := targets(ctx, nd.Resolver, c.JID.Domainpart(), c.DirectTLS)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range ts {
		var conn net.Conn
		if conn, err = nd.DialContext(ctx, "tcp", t.addr); err != nil {
			continue
		}
		tc, probe, werr := c.wrap(ctx, conn, t.tls)
		if werr == nil {
			return tc, probe, nil
		}
		err = werr
	}
	return nil, nil, err
}

// wrap puts conn under a probeConn, and with tlsFirst under TLS too once
// its handshake is done (closing conn if it fails).
func (c *Config) wrap(ctx context.Context, conn net.Conn, tlsFirst bool) (net.Conn, *probeConn, error) {
	p := &probeConn{Conn: conn, probe: !tlsFirst, beforeRead: c.BeforeRead}
	if !tlsFirst {
		return p, p, nil
	}
	tc := tls.Client(p, c.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return tc, nil, nil
}

// negotiateSession runs stream negotiation on conn and checks the result.
func negotiateSession(ctx context.Context, conn net.Conn, c *Config) (*xmpp.Session, error) {
	var state xmpp.SessionState
	var features []xmpp.StreamFeature
	_, directTLS := conn.(*tls.Conn)
	switch {
	case c.AllowPlaintext:
		// mellium only runs SASL on a session marked Secure; marking it is how
		// plaintext is allowed. It also keeps StartTLS from being attempted
		// (Prosody offers it again after authentication).
		state |= xmpp.Secure
	case !directTLS:
		features = append(features, xmpp.StartTLS(c.tlsConfig()))
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
			return xmpp.StreamConfig{Features: features, TeeIn: c.TeeIn, TeeOut: c.TeeOut}
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
