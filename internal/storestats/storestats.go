// Package storestats lets this repository's own programs (the bench
// program) read counters of the SQLite store's commits, which are no part
// of the store's API: they count only what a benchmark of Commit and
// ClaimKey needs.
package storestats

// Stats are counters of one store's commits since Open: the write
// transactions that Commit and ClaimKey calls were answered by and that
// committed (a group commit answers many calls with one; a write-ahead
// refused as a duplicate costs an empty one), the requests (batches and
// claims) they committed, and the pages they wrote to the write-ahead log.
// Left out: transactions that were rolled back (their pages too), and the
// store's other writes (Prune, the job queue's, the checkpoints).
type Stats struct {
	Transactions, Requests, WALPages int64
}

// SQLite returns the counters of s if it is a *sqlite.Store (package
// sqlite sets it when it is linked in; nil otherwise).
var SQLite func(s any) (Stats, bool)
