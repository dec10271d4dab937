package sqlite

import "github.com/xmpptrack/xmpptrack/internal/storestats"

func init() {
	storestats.SQLite = func(v any) (storestats.Stats, bool) {
		s, ok := v.(*Store)
		if !ok {
			return storestats.Stats{}, false
		}
		return s.stats(), true
	}
}

// stats returns the store's counters since Open (see package storestats).
func (s *Store) stats() storestats.Stats {
	return storestats.Stats{Transactions: s.txs.Load(), Requests: s.items.Load(), WALPages: s.written.Load()}
}
