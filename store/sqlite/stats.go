package sqlite

// Stats are counters of a store's commits since Open, for measuring what
// a workload costs the store (the bench program reports them per message).
type Stats struct {
	// Transactions counts the write transactions that Commit and ClaimKey
	// calls were answered by (a group commit answers many calls with one;
	// a lone sender's write-ahead is a transaction of its own, and one
	// refused as a duplicate an empty one).
	Transactions int64
	// Batches counts the batches and claims those transactions committed.
	Batches int64
	// WALPages counts the pages the transactions wrote to the write-ahead
	// log (frames: each a header and a page, each written by SQLite with a
	// system call of its own).
	WALPages int64
}

// Stats returns the store's counters since Open. It is safe to call at
// any time, also after Close.
func (s *Store) Stats() Stats {
	return Stats{Transactions: s.txs.Load(), Batches: s.items.Load(), WALPages: s.written.Load()}
}
