// Package store is the durable record of tracked messages: the interface
// that the client writes through and that followers such as an HTTP gateway
// read from, and the rules every implementation shares.
//
// Two implementations ship as subpackages: store/sqlite, the embedded
// default (one process, one file, pure Go), and store/postgres, for several
// instances that share one record. Neither is imported by the root package,
// so a program that uses no store links no database driver. Any other
// implementation proves itself with the conformance suite in
// store/storetest.
//
// # What is stored
//
//   - Messages, written ahead: a message is committed with its serialized
//     stanza ([Message].Raw) before its first byte goes to the wire, and
//     carries its owner ([Instance]: the account and resource that sent it),
//     its recipient, its tracking deadline and, once written, its
//     stream-management sequence number.
//   - Every state change ([Change]): the state, when, and the evidence (who
//     sent it, the error condition and text, the room's stanza-id). Each
//     change, and each new message, gets a feed position ([Change].Cursor).
//   - Stream-management state per owner ([Session]): the SM id and location,
//     the full JID bound, the inbound count as the application processed it,
//     the outbound counters.
//   - For the gateway: idempotency keys ([Key]) and durable job queues
//     ([Job]) for scheduled sends and a webhook outbox.
//
// # Writes and group commit
//
// Every write goes through [Store.Commit] with a [Batch]. Implementations
// group concurrent Commit calls into one transaction (group commit), so
// that writing each message ahead does not cost one disk sync per message:
// callers simply commit from many goroutines. Each batch succeeds or fails
// on its own, even when it shared a transaction with others. When Commit
// returns nil, the batch is durable as the implementation's durability
// setting promises.
//
// Both implementations group concurrent [Store.ClaimKey] calls too (the
// gateway claims an idempotency key per request): store/sqlite in the
// transactions of the batches queued with them, store/postgres in a
// transaction of their own per group. A claim after another of the same
// key in one group sees it. A claim that fails for its own reasons (the
// database refuses it) fails alone: the others are answered as without it.
// A failure of the database or the connection fails every claim of the
// group (with [ErrOutcomeUnknown] when the group may have been stored). A
// claim reports claimed=true exactly when it stored its key, and a claim
// that fails with another error stored nothing.
//
// # State changes are conditional and monotonic
//
// A change is applied only if the transition graph of package tracking
// allows it from the stored state ([Next] decides, for every
// implementation): a state never goes backwards, the same evidence twice
// changes nothing, a settled message never changes again, and concurrent
// recorders (two instances that both got a carbon copy of one receipt)
// leave one consistent history. A change that is not applied is not an
// error: its Cursor stays 0.
//
// A message is settled when tracking ended: it reached a final state
// (SEEN_BY_RECIPIENT, ABORTED, TIMED_OUT, CLOSED), or a TIMED_OUT or CLOSED
// change arrived in DELIVERED_TO_RECIPIENT or ERROR, which ends tracking
// without changing the state (and without a feed event). A settled message
// no longer needs its stanza: Raw is dropped then.
//
// # The feed
//
// Cursors grow in commit order: a follower that read every change up to
// cursor c will never later find a change at or below c that it did not
// see. [Store.Changes] returns the changes after a cursor, oldest first;
// [Store.Wait] blocks until there is one. A follower stores the cursor of
// the last change it processed and resumes from there. Cursors are not
// dense: gaps are normal.
//
// # Retention
//
// Settled messages, with their history and their feed events, are deleted
// once they have been settled for longer than the retention time (default
// [DefaultRetention], 7 days; implementations prune on their own and
// [Store.Prune] prunes on demand). A message in DELIVERED_TO_RECIPIENT or
// ERROR whose deadline has passed by as long counts as settled (its window
// ended: its tracker settled without a change to record). Other unsettled
// messages are never pruned.
// Expired idempotency keys are pruned at the same time.
//
// # Ownership
//
// Each instance owns the messages it sent and its stream-management state.
// [Store.Lock] takes an owner's lock; a second holder gets [ErrLocked] for
// as long as the first one lives. The lock ends with its holder: released
// by [Lease.Release], by Close, or by the process's death (the operating
// system or the database server notices), so that a restarted instance
// takes its state back without waiting.
//
// # Identity
//
// A message id is unique in a store for as long as its record is kept (the
// client's own ids, those it makes for a message sent without one, encrypt
// the client's registration counter with a key it draws at random, so they
// differ across instances and restarts as random 128-bit strings do;
// NewID's are 96 random bits), across owners: any instance can answer for
// any id.
package store
