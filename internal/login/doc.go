// Package login opens an authenticated, bound XMPP client session: TCP (to
// an address, or to the domain's DNS SRV targets, which it looks up and
// dials itself so that the connection under TLS is always its own),
// STARTTLS or direct TLS, SASL with SCRAM (channel binding where it is
// known to work) or PLAIN over TLS, then resource binding or, through
// Config.WrapBind, stream resumption.
//
// It is the client's login stack, kept apart from the client so that its
// one Config is the only place the connection settings live. Its errors are
// re-exported by the root package (ErrAuth, ErrNoTLS, ErrNoChannelBinding,
// ErrConnect, ErrNotXMPP, AuthError), where users read their documentation.
//
// Errors are classified where they happen: Dial returns an ErrConnect
// (*ConnectError) for every failure to reach or talk to the server, and the
// client classifies failures after Dial (the connection ends before stream
// management is enabled, or ctx ends) with Config.Failed the same way.
package login // import "github.com/xmpptrack/xmpptrack/internal/login"
