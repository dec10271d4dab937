package stanza

import (
	"errors"
	"strings"
)

// Decode errors. Decoders return them wrapped in a *FieldError that names
// the element and attribute at fault; test for them with errors.Is.
var (
	// ErrInvalidH means an h attribute is not an xs:unsignedInt (see
	// ParseH): it is empty, has spaces inside or other non-digits, is
	// negative, or exceeds 4294967295.
	ErrInvalidH = errors.New("stanza: h is not an unsignedInt")

	// ErrIDTooLong means an identifier is longer than MaxIDLen bytes.
	ErrIDTooLong = errors.New("stanza: identifier longer than MaxIDLen")

	// ErrMissingAttr means a required attribute is absent or empty.
	ErrMissingAttr = errors.New("stanza: required attribute missing")

	// ErrInvalidAttr means an attribute other than h has a value outside its
	// type, for example resume='yes' or a max that is not an unsignedInt.
	ErrInvalidAttr = errors.New("stanza: invalid attribute value")

	// ErrInvalidJID means a from or to attribute is not a valid JID.
	ErrInvalidJID = errors.New("stanza: invalid JID")

	// ErrUnexpectedElement means a decoder was given an element with a
	// different name or namespace than the type it decodes.
	ErrUnexpectedElement = errors.New("stanza: unexpected element")

	// ErrTooManyElements means a message repeats an element more often than
	// ParseMessage accepts (more than 32 stanza-ids).
	ErrTooManyElements = errors.New("stanza: too many elements")
)

// FieldError reports which element and attribute failed to decode.
// Err is one of the sentinel errors of this package, so
// errors.Is(err, ErrInvalidH) and similar work through a *FieldError.
//
// The offending value is deliberately not part of the error: it may be
// megabytes long or, for SM-IDs, a resumption credential.
type FieldError struct {
	// Element is the local name of the element, e.g. "a" or "enabled".
	Element string
	// Attr is the attribute name, e.g. "h", or "" when the element itself
	// (its name, namespace or text) is at fault.
	Attr string
	// Err is the reason, one of the package's sentinel errors.
	Err error
}

// Error returns a message such as "stanza: <a/> attribute h: h is not an
// unsignedInt".
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString("stanza: ")
	if e.Element != "" {
		b.WriteString("<")
		b.WriteString(e.Element)
		b.WriteString("/>")
		if e.Attr != "" {
			b.WriteString(" ")
		}
	}
	if e.Attr != "" {
		b.WriteString("attribute ")
		b.WriteString(e.Attr)
	}
	b.WriteString(": ")
	if e.Err == nil {
		b.WriteString("invalid")
	} else {
		msg, _ := strings.CutPrefix(e.Err.Error(), "stanza: ")
		b.WriteString(msg)
	}
	return b.String()
}

// Unwrap returns the sentinel error.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(element, attr string, err error) *FieldError {
	return &FieldError{Element: element, Attr: attr, Err: err}
}
