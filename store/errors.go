package store

import "errors"

// Errors shared by implementations; test with errors.Is.
var (
	// ErrNotFound: no such message, session or job.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a new message's id is already stored.
	ErrExists = errors.New("store: message id exists")
	// ErrInvalid: bad input (an empty id, an unknown state, a message
	// without its stanza, ...). Nothing was written.
	ErrInvalid = errors.New("store: invalid input")
	// ErrLocked: another holder owns the instance.
	ErrLocked = errors.New("store: instance locked by another holder")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrNewerSchema: the database was written by a newer version of this
	// library; open it with that version.
	ErrNewerSchema = errors.New("store: database schema is newer than this library")
	// ErrForeign: the file or database is not an xmpptrack store (or is
	// corrupt).
	ErrForeign = errors.New("store: not an xmpptrack store")
)
