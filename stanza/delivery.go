package stanza

import (
	"errors"
	"sort"

	xstanza "mellium.im/xmpp/stanza"
)

// Delivery error kinds. Classify sets DeliveryError.Kind to one of them;
// test with errors.Is. The package doc has the full mapping table.
var (
	// ErrOffline: the recipient is temporarily unavailable
	// (recipient-unavailable). Servers also bounce queued stanzas with it
	// when a session times out, so a later receipt may still arrive.
	ErrOffline = errors.New("stanza: recipient offline")

	// ErrNotAvailable: the service cannot handle the stanza now
	// (service-unavailable, resource-constraint, internal-server-error).
	// service-unavailable is also the privacy-preserving answer for
	// unknown or unreachable users.
	ErrNotAvailable = errors.New("stanza: service not available")

	// ErrPermissionDenied: the sender may not send this (forbidden,
	// not-allowed, not-authorized, payment-required, registration-required,
	// subscription-required, policy-violation).
	ErrPermissionDenied = errors.New("stanza: permission denied")

	// ErrInvalidHandle: the address is wrong or no longer exists
	// (jid-malformed, item-not-found, gone, redirect). Never follow a
	// redirect without asking the user.
	ErrInvalidHandle = errors.New("stanza: invalid recipient address")

	// ErrNotImplemented: the recipient or a server does not support what
	// was sent (feature-not-implemented).
	ErrNotImplemented = errors.New("stanza: feature not implemented")

	// ErrNetwork: the recipient's side is unreachable: our server could not
	// find or reach the recipient's server (remote-server-not-found,
	// remote-server-timeout). It comes only from such an error reply, never
	// from a failure to reach our own server (xmpptrack.ErrConnect).
	ErrNetwork = errors.New("stanza: remote server unreachable")

	// ErrDisconnected: the connection was lost before the fate of the
	// stanza was known. No stanza condition maps to it; the client uses it.
	ErrDisconnected = errors.New("stanza: disconnected")
)

// DeliveryError is a stanza error about an outgoing message, classified.
//
// errors.Is(err, ErrOffline) (or another kind) tests the classification;
// errors.As(err, &xs) with xs of type mellium.im/xmpp/stanza.Error gives the
// original error, and errors.Is(err, xstanza.Error{Condition: c}) tests the
// condition.
type DeliveryError struct {
	// Kind is one of the package's delivery sentinels, or nil for
	// conditions that say nothing definite about delivery.
	Kind error
	// Stanza is the stanza error as received.
	Stanza xstanza.Error
}

// Error returns the kind (if any), the condition (if any) and the error
// text, e.g. "stanza: recipient offline: recipient-unavailable".
func (e *DeliveryError) Error() string {
	msg := "stanza: delivery error"
	if e.Kind != nil {
		msg = e.Kind.Error()
	}
	switch cond := e.Stanza.Condition; {
	case cond != "":
		msg += ": " + string(cond)
	case e.Kind == nil:
		msg += ": " + string(xstanza.UndefinedCondition)
	}
	if text := errorText(e.Stanza); text != "" {
		msg += ": " + text
	}
	return msg
}

// errorText returns the text without language tag, or else the one of the
// smallest language tag, so that messages are deterministic.
func errorText(e xstanza.Error) string {
	if t, ok := e.Text[""]; ok {
		return t
	}
	if len(e.Text) == 0 {
		return ""
	}
	langs := make([]string, 0, len(e.Text))
	for l := range e.Text {
		langs = append(langs, l)
	}
	sort.Strings(langs)
	return e.Text[langs[0]]
}

// Unwrap returns Kind (if not nil) and Stanza, for errors.Is and errors.As.
func (e *DeliveryError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Stanza}
	}
	return []error{e.Kind, e.Stanza}
}

// Classify maps the condition of e to a delivery error kind; see the table
// in the package documentation. The result is never nil. Conditions that
// say nothing definite about delivery (bad-request, conflict,
// not-acceptable, unexpected-request, undefined-condition and unknown ones)
// give Kind nil.
func Classify(e xstanza.Error) *DeliveryError {
	return &DeliveryError{Kind: kindOf(e.Condition), Stanza: e}
}

func kindOf(c xstanza.Condition) error {
	switch c {
	case xstanza.RecipientUnavailable:
		return ErrOffline
	case xstanza.ServiceUnavailable, xstanza.ResourceConstraint, xstanza.InternalServerError:
		return ErrNotAvailable
	case xstanza.Forbidden, xstanza.NotAllowed, xstanza.NotAuthorized, "payment-required",
		xstanza.RegistrationRequired, xstanza.SubscriptionRequired, xstanza.PolicyViolation:
		return ErrPermissionDenied
	case xstanza.JIDMalformed, xstanza.ItemNotFound, xstanza.Gone, xstanza.Redirect:
		return ErrInvalidHandle
	case xstanza.FeatureNotImplemented:
		return ErrNotImplemented
	case xstanza.RemoteServerNotFound, xstanza.RemoteServerTimeout:
		return ErrNetwork
	}
	return nil
}
