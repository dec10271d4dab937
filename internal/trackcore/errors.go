package trackcore

import "errors"

// Errors returned by Registry.Track and TryTrack. Package tracking exports
// the first two under the same names, since Client.Send returns them.
var (
	ErrTooManyPending = errors.New("tracking: too many pending messages")
	ErrDuplicateID    = errors.New("tracking: id already pending")
	// ErrShutdown means the registry no longer accepts messages; the
	// client reports its own error instead.
	ErrShutdown = errors.New("tracking: registry shut down")
	// ErrIDTooLong means an id longer than a registry keeps (2 MiB; the
	// client refuses ids over 4,000 bytes before it asks).
	ErrIDTooLong = errors.New("tracking: id too long")
)
