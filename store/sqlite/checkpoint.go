package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"
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
// WAL stays bounded under any write load, at the cost of that one stall,
// as long as the checkpointer's goroutine gets to run (on a machine whose
// cores are all busy a writer can outrun it by dozens of thresholds first).
// A RESTART checkpoint also waits for the readers of the WAL to finish;
// it waits at most restartBusy (not the connections' busy timeout of
// seconds), so that a long reader (a large Pending or History, another
// process's query) cannot hold the writer: if readers remain, it gives up
// having copied what it could, and the next threshold's checkpoint tries
// again.
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
	// restartBusy bounds a RESTART checkpoint's wait for readers (and
	// so the writer's stall); the connection's own busy timeout is back in
	// force after it.
	restartBusy = 100 * time.Millisecond
)

// wrote adds the pages the writer connection wrote to the WAL since the
// last call, and wakes the checkpointer once they pass the threshold.
func (s *Store) wrote() {
	s.onWriter(context.Background(), func(c *wconn) error {
		s.walPages.Add(int64(c.walPages()))
		return nil
	})
	s.checkWAL()
}

// checkWAL wakes the checkpointer once the pages written to the WAL since
// the last checkpoint pass the threshold.
func (s *Store) checkWAL() {
	if s.walPages.Load() < int64(s.threshold()) {
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
// passive pass left and makes the next commit start the WAL over. Its
// busy timeout is restartBusy: readers of the WAL that outlast it make it
// give up (the WAL does not start over yet) rather than hold the writer.
func (s *Store) restart() {
	conn, err := s.w.Conn(s.ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	var prev int
	ctx := context.Background() // short statements; a cancelled one would leave the short timeout
	if err := conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&prev); err != nil {
		return
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", restartBusy.Milliseconds())); err != nil {
		return
	}
	s.checkpointOnce(conn, "RESTART")
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", prev)); err != nil {
		// Never leave the writer with the short timeout: drop the
		// connection (database/sql opens a new one, with the DSN's).
		conn.Raw(func(any) error { return driver.ErrBadConn })
	}
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
