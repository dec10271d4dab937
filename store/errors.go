package store

import (
	"errors"
	"fmt"
)

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
	// ErrOutcomeUnknown: Commit cannot tell whether the batch was written
	// (the connection to a database server broke while it committed, and
	// the store could not find out afterwards). It may be stored, whole,
	// or not at all; its cursors are unknown. Reading it back (Message)
	// finds it if it was stored; not finding it proves nothing (the server
	// may not have finished the commit). ClaimKey returns it when it cannot
	// tell whether it stored the key.
	ErrOutcomeUnknown = errors.New("store: the commit's outcome is unknown")
	// ErrCursorsUnknown: Commit wrote the batch, whole, but cannot hand
	// back its cursors (the connection to a database server broke while it
	// committed, and the store found the commit afterwards): they are left
	// 0. The batch is stored: do not commit it again. (Committing its
	// changes again would record nothing, a repeat being a no-op, but a
	// new message of it would fail with ErrExists.) It does not match
	// ErrOutcomeUnknown.
	ErrCursorsUnknown = errors.New("store: the batch was committed, its cursors are unknown")
)

// LockedError is the error of Store.Lock while another holder owns the
// instance: one sentence naming the instance and the holder. It matches
// ErrLocked.
type LockedError struct {
	// Owner is the instance asked for.
	Owner Instance
	// By describes the holder as far as the store knows it ("another client
	// of this store", "another process", a host and since when), "" if it
	// does not.
	By string
}

func (e *LockedError) Error() string {
	by := e.By
	if by == "" {
		by = "another holder"
	}
	return fmt.Sprintf("store: %s is locked by %s", e.Owner, by)
}

// Is reports whether target is ErrLocked.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }
