package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/xmpptrack/xmpptrack/internal/storestats"
	"github.com/xmpptrack/xmpptrack/internal/testkit/pgfloor"
	"github.com/xmpptrack/xmpptrack/internal/testkit/sqlitefloor"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// dbStatsQuery reads the database's cumulative counters, in the order of
// dbStatNames: transactions committed, rows written per table (inserted,
// updated, of which HOT), bytes of write-ahead log and its flushes.
const dbStatsQuery = `SELECT
	(SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
	(SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname = 'xmpptrack_messages'),
	(SELECT coalesce(sum(n_tup_upd), 0) FROM pg_stat_user_tables WHERE relname = 'xmpptrack_messages'),
	(SELECT coalesce(sum(n_tup_hot_upd), 0) FROM pg_stat_user_tables WHERE relname = 'xmpptrack_messages'),
	(SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname = 'xmpptrack_changes'),
	(SELECT coalesce(sum(n_tup_upd), 0) FROM pg_stat_user_tables WHERE relname = 'xmpptrack_feed'),
	(SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables WHERE relname = 'xmpptrack_sessions'),
	pg_current_wal_lsn() - '0/0'::pg_lsn,
	(SELECT wal_sync FROM pg_stat_wal),
	(SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname IN ('` + pgfloor.WALTable + `', '` + pgfloor.LogTable + `'))`

var dbStatNames = []string{"xact", "msg_ins", "msg_upd", "msg_hot", "changes", "feed_upd", "sessions", "wal_bytes", "wal_syncs", "floor_ins"}

// dbStats reads the counters of dbStatsQuery. Backends report their
// counters when idle (at most once a second) and when they end: read the
// final values after the stores closed their connections.
func dbStats(ctx context.Context, pg *testserver.Postgres, database string) (map[string]float64, error) {
	out, err := pg.SQL(ctx, database, dbStatsQuery)
	if err != nil {
		return nil, err
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) != len(dbStatNames) {
		return nil, fmt.Errorf("bench: database statistics: unexpected %q", out)
	}
	st := map[string]float64{}
	for i, name := range dbStatNames {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, fmt.Errorf("bench: database statistics: %q: %w", f[i], err)
		}
		st[name] = v
	}
	return st, nil
}

// dbStatsPerMessage formats the difference of two readings per message.
func dbStatsPerMessage(d map[string]float64, n int) string {
	if len(d) == 0 || n == 0 {
		return ""
	}
	per := func(k string) float64 { return d[k] / float64(n) }
	return fmt.Sprintf("per message: %.3f transactions, messages %.2f inserted %.2f updated (%.2f HOT), changes %.2f inserted, feed %.3f updated, sessions %.3f written, WAL %.0f bytes, %.3f WAL flushes, floor rows (pgfloor's tables) %.2f inserted",
		per("xact"), per("msg_ins"), per("msg_upd"), per("msg_hot"), per("changes"), per("feed_upd"), per("sessions"), per("wal_bytes"), per("wal_syncs"), per("floor_ins"))
}

// liteStats sums the counters of the SQLite stores (package storestats;
// the floor instrument's of its own), under keys that dbStatsQuery's names
// never take.
func liteStats(stores []any) map[string]float64 {
	st := map[string]float64{}
	for _, s := range stores {
		c, ok := storestats.SQLite(s)
		if f, floor := s.(*sqlitefloor.Store); floor {
			c, ok = f.Stats(), true
		}
		if !ok {
			continue
		}
		st["sqlite_tx"] += float64(c.Transactions)
		st["sqlite_requests"] += float64(c.Requests)
		st["sqlite_wal_pages"] += float64(c.WALPages)
	}
	return st
}

// liteStatsPerMessage formats the difference of two readings of liteStats
// per message; "" for a run without them.
func liteStatsPerMessage(d map[string]float64, n int) string {
	if _, ok := d["sqlite_tx"]; !ok || n == 0 {
		return ""
	}
	per := func(k string) float64 { return d[k] / float64(n) }
	return fmt.Sprintf("%.3f transactions, %.3f requests, %.2f WAL pages", per("sqlite_tx"), per("sqlite_requests"), per("sqlite_wal_pages"))
}
