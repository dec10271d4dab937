package xmpptrack

import (
	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/login"
)

// ErrAuth is reported (through errors.Is) when the server refused the
// credentials, or when the server failed to prove that it knows them (a SCRAM
// server signature that does not verify). Such errors are an *AuthError,
// which carries the SASL mechanism and the server's condition and text.
var ErrAuth = login.ErrAuth

// ErrNoTLS is reported (through errors.Is) when TLS could not be
// established and Config.AllowPlaintext is not set: the server does not
// offer STARTTLS, or refuses it. Nothing was authenticated.
var ErrNoTLS = login.ErrNoTLS

// ErrNoChannelBinding is reported (through errors.Is) when
// Config.RequireChannelBinding is set but the server offers no SCRAM -PLUS
// mechanism with a channel binding type both sides support. Nothing was
// authenticated.
var ErrNoChannelBinding = login.ErrNoChannelBinding

// ErrConnect is reported (through errors.Is) when we could not reach or talk
// to our own server: the name did not resolve, TCP failed, the TLS handshake
// or the certificate failed, what answered does not speak XMPP (see
// ErrNotXMPP), the server broke off or broke the protocol before the
// session was ready (including before it answered stream management's
// <enable/>), or the context's deadline passed first (the error then
// matches context.DeadlineExceeded as well). The cause stays reachable with
// errors.As: *net.DNSError, *net.OpError, *tls.CertificateVerificationError
// and the x509 errors, tls.RecordHeaderError, *xml.SyntaxError, mellium's
// stream.Error. Dial, SendOnce and a Client's reconnections report it.
//
// Not ErrConnect: ErrAuth, ErrNoTLS, ErrNoChannelBinding, a server that
// offers no SASL mechanism in common, configuration mistakes and a
// canceled context (context.Canceled): retrying the same login would not
// help, or was not wanted. A recipient's server that cannot be reached is
// another matter: that is stanza.ErrNetwork, on a message's tracker.
var ErrConnect = login.ErrConnect

// ErrNotXMPP is reported (through errors.Is, along with ErrConnect) when
// what answered at the server's address does not speak XMPP: an HTTP
// server, say, or a server without TLS where Config.DirectTLS expects it.
// Check Config.Addr.
var ErrNotXMPP = login.ErrNotXMPP

// AuthError is a SASL failure: the server refused the credentials, or could
// not prove that it knows them. It matches ErrAuth with errors.Is; get it
// with errors.As. Its fields:
//
//	Mechanism string // the SASL mechanism tried, e.g. "SCRAM-SHA-256"
//	Condition string // RFC 6120 §6.5 condition, e.g. "not-authorized"; "" if the server's proof failed
//	Text      string // the server's explanation, if any
//	Err       error  // the cause (sasl.ErrAuthn for a bad server signature); may be nil
//
// Its Temporary method reports the temporary-auth-failure condition: the
// server could not check the credentials for now, and the same ones may
// work later.
type AuthError = login.AuthError

// loginConfig is the one place where the connection settings of a Config
// become the login stack's configuration.
func loginConfig(account jid.JID, password string, cfg *Config) login.Config {
	return login.Config{
		JID:                   account,
		Password:              password,
		Addr:                  cfg.Addr,
		TLSConfig:             cfg.TLSConfig,
		DirectTLS:             cfg.DirectTLS,
		AllowPlaintext:        cfg.AllowPlaintext,
		RequireChannelBinding: cfg.RequireChannelBinding,
		Logger:                cfg.Logger,
		DialConn:              cfg.dial,
	}
}
