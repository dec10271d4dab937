package sqlite

import (
	"context"
	"database/sql"
	"time"

	msqlite "modernc.org/sqlite"
)

// Checkpoints (copying the pages of the WAL into the database file, so
// that the WAL can start over) run on a connection of their own, on the
// checkpointer goroutine, instead of in the commit that made the WAL pass
// SQLite's threshold: the writer's wal_autocheckpoint is 0, so a commit
// never waits for a checkpoint nor for its sync of the database file.
//
// The trigger is the same as SQLite's automatic one, by size: after the
// writer has written checkpointPages pages to the WAL since the last
// checkpoint. A passive checkpoint does not stop commits; commits that
// come while it runs append frames it leaves behind, which would keep the
// WAL from starting over, so it goes on with further passive passes (each
// copying only what came during the previous one) until a pass finds
// nothing new. Should the WAL still pass walCap thresholds (writes faster
// than the copy), one checkpoint in RESTART mode holds the writer's
// connection while it copies the rest and makes the WAL start over: the
// WAL stays bounded under any write load, at the cost of that one stall.
//
// Open copies a WAL left behind (by a killed process) into the file before
// it returns, so that the first commits do not compete with that copy.
// Close stops the checkpointer and then folds the WAL into the file.

const (
	// checkpointPages is SQLite's default automatic checkpoint threshold.
	checkpointPages = 1000
	// walCap, in checkpoint thresholds, is the WAL size past which a
	// checkpoint makes the WAL start over.
	walCap = 4
	// passes bounds the passive passes of one checkpoint.
	passes = 4
)

// wrote adds the pages the writer connection wrote to the WAL since the
// last call, and wakes the checkpointer once they pass the threshold.
func (s *Store) wrote() {
	conn, err := s.w.Conn(context.Background())
	if err != nil {
		return
	}
	var n int
	conn.Raw(func(dc any) error {
		if st, ok := dc.(msqlite.DBStatus); ok {
			n, _, _ = st.Status(msqlite.DBStatusCacheWrite, true)
		}
		return nil
	})
	conn.Close()
	if s.walPages.Add(int64(n)) < int64(s.threshold()) {
		return
	}
	select {
	case s.ckWake <- struct{}{}:
	default:
	}
}

// threshold is the checkpoint threshold in pages.
func (s *Store) threshold() int {
	if s.cfg.checkpointPages > 0 {
		return s.cfg.checkpointPages
	}
	return checkpointPages
}

// checkpointer checkpoints each time wrote wakes it, until Close.
func (s *Store) checkpointer(ck *sql.DB) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.ckWake:
		}
		s.walPages.Store(0)
		s.checkpoint(ck)
	}
}

// checkpoint runs passive passes until one finds no new frame (or
// passes of them), then a RESTART checkpoint if the WAL is past walCap
// thresholds. It is best effort: a failed checkpoint leaves the WAL to the
// next one, and to Close.
func (s *Store) checkpoint(ck *sql.DB) {
	prev := -1
	for range passes {
		log, done, err := s.checkpointOnce(ck, "PASSIVE")
		if err != nil {
			return
		}
		if log > walCap*s.threshold() {
			s.restart()
			return
		}
		if log == done && log == prev {
			return
		}
		prev = log
	}
}

// restart holds the writer's connection, so that no commit can append
// meanwhile, for a checkpoint in RESTART mode: it copies what the last
// passive pass left and makes the next commit start the WAL over.
func (s *Store) restart() {
	conn, err := s.w.Conn(s.ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	s.checkpointOnce(conn, "RESTART")
}

// checkpointOnce runs one checkpoint in mode and returns the WAL's frames
// and how many of them are in the database file.
func (s *Store) checkpointOnce(ck querier, mode string) (log, done int, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	var busy int
	err = ck.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &log, &done)
	if err != nil {
		if s.log != nil && !s.isClosed() {
			s.log.Warn("sqlite: checkpoint failed", "mode", mode, "err", err)
		}
		return 0, 0, err
	}
	if s.cfg.checkpointed != nil {
		s.cfg.checkpointed(mode, log, done)
	}
	return log, done, nil
}
