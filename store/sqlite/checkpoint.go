package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// checkpointEvery is the least time between two checkpoints.
const checkpointEvery = 100 * time.Millisecond

// Checkpoints (copying the pages of the WAL into the database file, so
// that the WAL can start over) run on a connection of their own, on the
// checkpointer goroutine, instead of in the commit that made the WAL pass
// SQLite's threshold (wal_autocheckpoint is 0 on the writer): a commit
// never waits for one, nor for its sync of the database file. A passive
// checkpoint does not stop commits; it runs after writes, at most every
// checkpointEvery, so that the WAL holds about that long's worth of
// commits. Close stops it and folds the WAL into the file.

// wrote tells the checkpointer that the writer committed something.
func (s *Store) wrote() {
	select {
	case s.ckWake <- struct{}{}:
	default:
	}
}

// checkpointer runs a passive checkpoint after writes, at most every
// checkpointEvery, until Close.
func (s *Store) checkpointer(ck *sql.DB) {
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.ckWake:
		}
		// Best effort: a failed checkpoint leaves the WAL to the next
		// one, and to Close.
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		var busy, log, done int
		err := ck.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done)
		cancel()
		if err != nil && s.log != nil && !s.isClosed() {
			s.log.Warn("sqlite: checkpoint failed", "err", err)
		}
		if err == nil && s.cfg.checkpointed != nil {
			s.cfg.checkpointed(log, done)
		}
		pause.Reset(checkpointEvery)
		select {
		case <-s.ctx.Done():
			return
		case <-pause.C:
		}
	}
}
