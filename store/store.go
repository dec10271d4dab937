package store

import (
	"context"
	"time"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// DefaultRetention is how long settled messages are kept by default.
const DefaultRetention = 7 * 24 * time.Hour

// Store is the durable record. Implementations are safe for concurrent use
// and pass the conformance suite of package store/storetest.
type Store interface {
	// Commit writes a batch atomically: all of it or nothing. Concurrent
	// calls are grouped into one transaction (see the package
	// documentation); each batch still succeeds or fails on its own. On
	// success it sets the Cursor of each message (its creation event) and of
	// each change that was applied (0 for one that was not: refused by the
	// transition graph, a repeat, or for an unknown or settled message). A
	// new message whose id exists fails the batch with ErrExists; invalid
	// input fails it with ErrInvalid, before anything is written. Commit
	// must not retain b or its slices after it returns: the caller may
	// reuse them.
	Commit(ctx context.Context, b *Batch) error

	// Message returns a message with its history, oldest change first. It
	// fails with ErrNotFound for an unknown (or pruned) id.
	Message(ctx context.Context, id string) (Record, error)

	// Pending calls fn for each unsettled message of owner, in the order the
	// messages were committed, Raw included. An error from fn stops the
	// walk and is returned.
	Pending(ctx context.Context, owner Instance, fn func(Message) error) error

	// Session returns owner's stream-management state; ErrNotFound if none
	// was ever saved.
	Session(ctx context.Context, owner Instance) (Session, error)

	// Changes returns up to q.Limit changes with a cursor above q.After, in
	// cursor order. See the package documentation for the guarantees.
	Changes(ctx context.Context, q FeedQuery) ([]Change, error)

	// LastCursor returns the highest cursor committed so far (0 for an
	// empty feed). Following from it means "from now on".
	LastCursor(ctx context.Context) (int64, error)

	// Wait returns nil once a change with a cursor above after is committed
	// (at once if there is one already), or ctx's error. A follower calls
	// Changes after it. Waiters are woken by commits, not by polling, at
	// least for commits made through this Store value.
	Wait(ctx context.Context, after int64) error

	// Prune deletes the messages settled before before, with their history,
	// and expired idempotency keys, and returns the number of messages
	// deleted. A message in DELIVERED_TO_RECIPIENT or ERROR whose deadline
	// is before before counts as settled: its window ended, which settles
	// its tracker without a change to record.
	Prune(ctx context.Context, before time.Time) (int, error)

	// Lock takes owner's ownership lock. It fails with ErrLocked while
	// another holder (another Store value, another process, another host)
	// holds it.
	Lock(ctx context.Context, owner Instance) (Lease, error)

	// ClaimKey stores k unless an unexpired key with the same Scope and
	// Name exists. It returns the value stored under the key (k.Value when
	// it stored it) and whether this call stored it. Use it for idempotency
	// keys: the first request claims the key, a repeat gets the first
	// request's value.
	ClaimKey(ctx context.Context, k Key) (value string, claimed bool, err error)

	// Key returns the value of the key of that scope and name, and whether
	// there is one: an expired key is not found. It writes nothing.
	Key(ctx context.Context, scope, name string) (value string, ok bool, err error)

	// PutJob adds a job to its queue, or replaces the job of the same Queue
	// and Name.
	PutJob(ctx context.Context, j Job) error

	// AddJob adds a job unless its queue has one of the same Name, which it
	// leaves as it is (its data, due time and claim), and reports whether
	// it added it. Of several instances that each create a job they all
	// need, one creates it and none replaces what another wrote since.
	AddJob(ctx context.Context, j Job) (added bool, err error)

	// ClaimJobs returns up to limit jobs of queue due at or before now,
	// earliest first, and makes each one due again at now+lease with
	// Attempts incremented, atomically: concurrent claimers (other
	// instances) never get the same job until its lease ended. A claimer
	// deletes a job it finished (DeleteJob) or reschedules it (PutJob); a
	// claimer that died leaves it to be claimed again after the lease.
	ClaimJobs(ctx context.Context, queue string, now time.Time, lease time.Duration, limit int) ([]Job, error)

	// DeleteJob deletes a job and reports whether it existed.
	DeleteJob(ctx context.Context, queue, name string) (bool, error)

	// Close releases the store's resources and every lease it holds. Calls
	// after Close fail with ErrClosed.
	Close() error
}

// Instance identifies an owner: one account, one resource.
type Instance struct {
	Account  string // bare JID
	Resource string // resourcepart; may be empty for a single-instance account
}

func (i Instance) String() string {
	if i.Resource == "" {
		return i.Account
	}
	return i.Account + "/" + i.Resource
}

// Message is a stored message.
type Message struct {
	// ID is the message's id (its id attribute and origin-id).
	ID string
	// Owner is the instance that sent it.
	Owner Instance
	// To is the recipient as addressed (a bare JID, or a room).
	To string
	// Room reports a group-chat message.
	Room bool
	// Thread is its XEP-0201 thread id, if any.
	Thread string
	// Channel is an application label (the gateway's channels); may be
	// empty.
	Channel string
	// Raw is the stanza exactly as written to the wire. Required when the
	// message is committed unless its state is already settled; dropped
	// once it settles.
	Raw []byte
	// Created is when it was committed (set by the store when zero). A
	// store keeps a given Created to the millisecond at least (the
	// conformance suite checks it): a client tells its own records by it.
	Created time.Time
	// Deadline is when its tracking window ends; zero for none.
	Deadline time.Time
	// Seq is its stream-management sequence number (the h that
	// acknowledges it), valid when Written is set. See Batch.Written.
	Seq     uint32
	Written bool
	// State is its current state. When committing a new message it is the
	// initial state (usually InTransit).
	State tracking.MessageState
	// Settled reports that tracking has ended; Updated is when the state
	// last changed or it settled.
	Settled bool
	Updated time.Time
	// Cursor is the feed position of its creation event (after Commit) or
	// of its latest change (when read).
	Cursor int64
}

// Evidence is what caused a state change.
type Evidence struct {
	// From is the sender of the evidence (a full JID, an occupant JID in a
	// room); empty for acks and for our own server's errors.
	From string
	// StanzaID is the id the room assigned (XEP-0359), if any.
	StanzaID string
	// Condition and Text are the error condition (such as
	// "service-unavailable") and text of an error reply.
	Condition string
	Text      string
}

// Change is one state change: a request when committed (ID, State, At,
// Evidence), a feed event when read (every field).
type Change struct {
	// Cursor is its feed position, set by the store (0: not applied).
	Cursor int64
	// ID is the message's id.
	ID string
	// State is the requested state; when read, the state reached.
	State tracking.MessageState
	// At is when it happened (set by the store when zero).
	At time.Time
	Evidence
	// Owner, To, Room and Channel are the message's, filled in when read.
	Owner   Instance
	To      string
	Room    bool
	Channel string
	// Settled reports that this change settled the message (when read).
	Settled bool
}

// Written records the stream-management sequence number a message got when
// it was written. Stores keep Seq as given; the client writes 0 (no
// number: XEP-0198 counts from 1) to void a number of a stream that was
// replaced, and reads a stored 0 as none.
type Written struct {
	ID  string
	Seq uint32
}

// Session is one owner's stream-management state.
type Session struct {
	Owner Instance
	// JID is the full JID bound for the session, restored on resumption.
	JID string
	// ID is the SM-ID ("" when there is no resumable stream). It is a
	// credential: never log it.
	ID string
	// Location is the server's preferred reconnection address, if any.
	Location string
	// Max is how long the server keeps the stream resumable.
	Max time.Duration
	// Inbound is the inbound count as the application processed it: the h
	// to claim on resumption.
	Inbound uint32
	// Outbound is the number of the last stanza written; Acked the last h
	// the server acknowledged.
	Outbound, Acked uint32
	// Updated is when it was saved (set by the store when zero).
	Updated time.Time
}

// Batch is one atomic write. Any field may be empty.
type Batch struct {
	// Messages are new messages (write-ahead).
	Messages []Message
	// Changes are state changes, applied in order (a change may follow the
	// message it is about in the same batch).
	Changes []Change
	// Written sets sequence numbers of messages already stored.
	Written []Written
	// Sessions replace their owners' stream-management state.
	Sessions []Session
}

// Record is a message with its history.
type Record struct {
	Message
	// History lists the applied changes, oldest first; the first is the
	// message's creation in its initial state.
	History []Change
}

// FeedQuery selects changes for a follower.
type FeedQuery struct {
	// After is the cursor of the last change the follower saw; 0 starts
	// at the oldest change kept.
	After int64
	// Limit bounds the number of changes returned; zero or negative means
	// 100, and it is capped at MaxFeedLimit (see Count).
	Limit int
	// Channels, if not empty, keeps only changes of messages in these
	// channels.
	Channels []string
	// Owner, if not zero, keeps only changes of this owner's messages.
	Owner Instance
}

// Key is an idempotency key.
type Key struct {
	Scope, Name string // the key: Scope (an account, a token) and the client's key
	Value       string // what it maps to (a message id, a request digest)
	Expires     time.Time
}

// Job is an entry of a durable queue (scheduled sends, webhook deliveries).
type Job struct {
	Queue    string // the queue, such as "send" or "webhook"
	Name     string // unique within the queue
	Due      time.Time
	Data     []byte
	Attempts int // how often it was claimed
}

// Lease is an ownership lock held by a Store.
type Lease interface {
	// Owner is the instance it is for.
	Owner() Instance
	// Lost is closed when the lock was lost without Release: another
	// holder may have it now (a store that can take a lock again after a
	// fault closes it only when it cannot), so the holder must stop
	// writing as owner.
	Lost() <-chan struct{}
	// Release gives the lock back. Releasing twice is a no-op.
	Release() error
}
