// Package stanza holds the wire types xmpptrack needs on top of
// mellium.im/xmpp: XEP-0198 stream management elements, XEP-0184 receipts,
// XEP-0333 markers, XEP-0359 ids, the classification of stanza errors into
// delivery errors, and a cheap parser that extracts delivery evidence from
// incoming messages.
//
// The package does no I/O and keeps no global state (a Parser keeps what its
// owner gives it). Every element type has
// TokenReader, WriteXML and MarshalXML methods for encoding and an
// UnmarshalXML method for decoding.
//
// # Decoding is strict and bounded
//
// XEP-0198 h values must be xs:unsignedInt (see ParseH). Identifiers longer
// than MaxIDLen bytes are rejected. Decode failures are *FieldError values
// naming the element and attribute; they wrap ErrInvalidH, ErrIDTooLong,
// ErrMissingAttr, ErrInvalidAttr, ErrInvalidJID, ErrUnexpectedElement or
// ErrTooManyElements.
// Decoders consume the whole element even when they report an error, so the
// stream stays usable.
//
// # Delivery errors
//
// Classify wraps a stanza error in a *DeliveryError whose Kind is one of
// the sentinel errors, chosen by the error's condition, so that
// errors.Is(err, ErrOffline) (or another kind) tests it:
//
//	condition                                   Kind
//	recipient-unavailable                       ErrOffline
//	service-unavailable, resource-constraint,
//	internal-server-error                       ErrNotAvailable
//	forbidden, not-allowed, not-authorized,
//	payment-required, registration-required,
//	subscription-required, policy-violation     ErrPermissionDenied
//	jid-malformed, item-not-found, gone,
//	redirect                                    ErrInvalidHandle
//	feature-not-implemented                     ErrNotImplemented
//	remote-server-not-found,
//	remote-server-timeout                       ErrNetwork
//	bad-request, conflict, not-acceptable,
//	unexpected-request, undefined-condition,
//	anything unknown                            nil (no kind matches)
//
// ErrDisconnected is never produced by Classify: the client uses it when the
// connection is lost.
//
// # Message evidence
//
// ParseMessage reads one <message/> and returns an Evidence: the receipt,
// marker, ids, error and carbon it carries. It does not decide whether the
// evidence is trustworthy (sender binding, carbon origin, stanza-id
// announcements); that is the tracker's job. A Parser does the same for a
// stream of messages, remembering the last few addresses it validated so
// that the same parties are not validated again on every message.
package stanza // import "github.com/xmpptrack/xmpptrack/stanza"
