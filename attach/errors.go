package attach

import (
	"errors"
	"fmt"
	"time"

	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
)

var (
	// ErrNoService: the account's server offers no XEP-0363 upload service.
	ErrNoService = errors.New("attach: no HTTP file upload service")

	// ErrTooLarge: the file is larger than the upload service accepts. It is
	// matched by a *TooLargeError (found before asking for a slot) and by a
	// *SlotError whose reply carried <file-too-large/>.
	ErrTooLarge = errors.New("attach: file too large for the upload service")

	// ErrBadName: the file name is empty, or nothing usable is left of it
	// once path elements and control characters are removed.
	ErrBadName = errors.New("attach: unusable file name")

	// ErrPlaintext: the service gave an http:// URL and Config.AllowPlaintext
	// is not set.
	ErrPlaintext = errors.New("attach: plain-HTTP upload URL refused")

	// ErrRedirect: the upload server answered the PUT with a redirect. The
	// body was streamed and cannot be sent again, and a redirect to another
	// host would hand the file to a party the service did not name.
	ErrRedirect = errors.New("attach: upload redirected")

	// ErrBadSlot: the service's slot is unusable (no put or get URL, a
	// scheme other than https or http).
	ErrBadSlot = errors.New("attach: unusable upload slot")

	// ErrSize: the body ended before File.Size bytes, or went on after them.
	ErrSize = errors.New("attach: body length differs from File.Size")
)

// TooLargeError reports a file larger than the service's announced limit,
// found before anything was asked or uploaded. It matches ErrTooLarge.
type TooLargeError struct {
	Size, Max int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("attach: file of %d bytes is larger than the upload service's limit of %d bytes", e.Size, e.Max)
}

// Is reports whether target is ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// SlotError is the upload service's refusal of a slot. It matches the
// stanza package's delivery kinds through its classification (a quota,
// resource-constraint, matches stanza.ErrNotAvailable; not-allowed and
// forbidden match stanza.ErrPermissionDenied), ErrTooLarge when the reply
// says file-too-large, and mellium's stanza.Error (errors.As) with the
// condition as received.
type SlotError struct {
	// Stanza is the error as received.
	Stanza xstanza.Error
	// MaxSize is the limit the service named in <file-too-large/>, 0 if none.
	MaxSize int64
	// RetryAt is when the service said to try again (<retry stamp=''/>,
	// with a quota), zero if it did not.
	RetryAt time.Time

	tooBig bool
}

func (e *SlotError) Error() string {
	msg := "attach: upload slot refused: " + string(e.Stanza.Condition)
	if t := e.Stanza.Text[""]; t != "" {
		msg += ": " + t
	} else {
		for _, t := range e.Stanza.Text {
			msg += ": " + t
			break
		}
	}
	if e.MaxSize > 0 {
		msg += fmt.Sprintf(" (limit %d bytes)", e.MaxSize)
	}
	if !e.RetryAt.IsZero() {
		msg += " (retry after " + e.RetryAt.UTC().Format(time.RFC3339) + ")"
	}
	return msg
}

// Unwrap returns the classified stanza error and, for file-too-large,
// ErrTooLarge.
func (e *SlotError) Unwrap() []error {
	errs := []error{stanza.Classify(e.Stanza)}
	if e.tooBig {
		errs = append(errs, ErrTooLarge)
	}
	return errs
}

func slotError(ie *iqError) *SlotError {
	return &SlotError{Stanza: ie.Stanza, MaxSize: ie.MaxSize, RetryAt: ie.RetryAt, tooBig: ie.TooBig}
}

// HTTPError is a PUT answered with a status other than 2xx.
type HTTPError struct {
	StatusCode int
	Status     string
	// Body is the start of the response body (at most 512 bytes).
	Body string
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return "attach: upload refused: HTTP " + e.Status
	}
	return fmt.Sprintf("attach: upload refused: HTTP %s: %q", e.Status, e.Body)
}
