package login

import (
	"errors"
	"fmt"
	"strings"
)

// The errors of a login. The root package re-exports them under the same
// names, with the documentation users read.
var (
	// ErrAuth: the server refused the credentials, or failed to prove that
	// it knows them (a SCRAM server signature that does not verify).
	ErrAuth = errors.New("xmpptrack: authentication failed")

	// ErrNoChannelBinding: channel binding is required but the server
	// offers no -PLUS mechanism with a binding type both sides support.
	ErrNoChannelBinding = errors.New("xmpptrack: channel binding required but not available")

	// ErrNoTLS: TLS could not be established (the server does not offer
	// STARTTLS, or refuses it) and plaintext was not allowed.
	ErrNoTLS = errors.New("xmpptrack: no TLS")

	// errNoMechanism: the server offers no SASL mechanism this connection
	// may use (PLAIN only, without TLS, say). Not ErrConnect: the server
	// answered, and retrying would not help.
	errNoMechanism = errors.New("no acceptable SASL mechanism")
)

// AuthError is a SASL failure. It matches ErrAuth with errors.Is.
type AuthError struct {
	Mechanism string // the SASL mechanism that was tried, e.g. SCRAM-SHA-256
	Condition string // RFC 6120 §6.5 condition; "" if the server's proof failed
	Text      string // the server's text, if any
	Err       error  // the cause, e.g. sasl.ErrAuthn for a bad server signature; may be nil
}

func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString(ErrAuth.Error())
	b.WriteString(": ")
	switch {
	case e.Condition != "":
		b.WriteString(e.Condition)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	}
	if e.Text != "" {
		fmt.Fprintf(&b, " (%q)", e.Text)
	}
	fmt.Fprintf(&b, " [%s]", e.Mechanism)
	return b.String()
}

// Unwrap returns ErrAuth and the cause.
func (e *AuthError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrAuth, e.Err}
	}
	return []error{ErrAuth}
}

// Temporary reports the temporary-auth-failure condition (RFC 6120 §6.5.10):
// the server could not check the credentials for now (its authentication
// backend is down, say), and retrying later may succeed with the same ones.
func (e *AuthError) Temporary() bool { return e.Condition == "temporary-auth-failure" }
