package xmpptrack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// inDoubt settles a write-ahead whose commit failed with
// store.ErrOutcomeUnknown (err): nil when the message is stored, an error
// matching store.ErrExists when another record holds its id, else, once
// ctx ended (or the client closed, or the store did) with the store still
// failing, ErrRecordUncertain (see there for the rules).
func (d *durable) inDoubt(ctx context.Context, m store.Message, err error) error {
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, recorderRetry) {
		// Commit it again. The id is unique: the database makes this
		// insert wait for a first one still in progress, or makes a late
		// first one fail, so that at most one lands.
		again := m
		cerr := d.st.Commit(ctx, &store.Batch{Messages: []store.Message{again}})
		if cerr == nil || errors.Is(cerr, store.ErrCursorsUnknown) {
			return nil // stored now
		}
		rec, rerr := d.st.Message(ctx, m.ID)
		switch {
		case rerr == nil && d.isThis(rec, m):
			return nil
		case rerr == nil:
			// Another message's record: ours cannot have been stored.
			return fmt.Errorf("%w (an earlier record has this id)", store.ErrExists)
		case errors.Is(cerr, store.ErrClosed):
		default:
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
			case <-d.stop:
			}
		}
		break
	}
	d.mu.Lock()
	if d.unsure == nil {
		d.unsure = map[string]bool{}
	}
	d.unsure[m.ID] = true
	d.mu.Unlock()
	return &UncertainError{ID: m.ID, Err: err}
}

// UncertainError is the error Send returns with ErrRecordUncertain
// (errors.Is matches it): it names the message's id, also one that Send
// made up for a Message without one, so that a retry can use it.
type UncertainError struct {
	ID  string // the message's id: retry Send with it and the same message
	Err error  // the store's error
}

func (e *UncertainError) Error() string {
	return fmt.Sprintf("%v (message id %q): %v", ErrRecordUncertain, e.ID, e.Err)
}

// Is reports whether target is ErrRecordUncertain.
func (e *UncertainError) Is(target error) bool { return target == ErrRecordUncertain }

// Unwrap returns the store's error.
func (e *UncertainError) Unwrap() error { return e.Err }

// isThis reports whether rec is the record of m as Send wrote it ahead,
// still pending and untouched: same owner, same stanza, IN_TRANSIT.
func (d *durable) isThis(rec store.Record, m store.Message) bool {
	return rec.Owner == d.owner && !rec.Settled && rec.State == tracking.InTransit &&
		bytes.Equal(rec.Raw, m.Raw)
}

// adopt reports whether m, whose id the store holds, is a message an
// earlier Send reported ErrRecordUncertain for, stored after all (its
// commit landed late): this Send then sends it.
func (d *durable) adopt(ctx context.Context, m store.Message) bool {
	d.mu.Lock()
	unsure := d.unsure[m.ID]
	d.mu.Unlock()
	if !unsure {
		return false
	}
	rec, err := d.st.Message(ctx, m.ID)
	if err != nil || !d.isThis(rec, m) {
		return false
	}
	d.mu.Lock()
	delete(d.unsure, m.ID)
	if len(d.unsure) == 0 {
		d.unsure = nil
	}
	d.mu.Unlock()
	d.failed(nil)
	return true
}
