// Package pgfloor is a measuring instrument of the benchmark, never a
// store: it puts floors under what the PostgreSQL store costs, the way the
// gateway benchmark's bare handler (-floor) bounds the HTTP gateway.
//
// A floor is the real store/postgres (Open, its pool, its group commit
// with Refill, its synchronous_commit, the encoding and the one round trip
// of its call; Lock, Session, Pending and every read) on a database where
// Install replaced the server-side function that each group commit calls,
// xmpptrack_commit, by one that does less (its arguments and results, not
// its SET clauses: the real function's plan and JIT settings are gone).
// The sender, its waits for the group commits and its stream are the real
// store's and this client's, so that a bench run through a floor costs
// what a store doing only the floor's database work would cost every
// process with this client's group commit (Refill) and its stream pattern
// (the stanzas written after each group commit, sm's coalescing): a floor
// does not vary those, and does not bound what another send path would
// cost (the store's client side, pgx and the encoding of the call, took
// about 3% of the sender's CPU in earlier profiles).
//
// Rows is the least durable work the record needs: in one transaction per
// group commit (the call's own), the write-ahead rows (id, stanza) into a
// table whose only index is its primary key, the state changes and
// sequence numbers appended as (id, state, time) and (id, seq) rows into
// one table without any index, and the stream-management state upserted
// by its owner. It omits what the real function does beyond that: the
// message's other columns (owner, recipient, room, thread, channel,
// created, deadline, state), the changes' evidence (from, stanza id, error
// condition and text), the lock of
// the messages a change is about, the transition graph (every change is
// appended: a repeat or a step back is not refused), the update of the
// message's state, the feed (its counter row held through the flush, its
// rows and their indexes, the NOTIFY) and the indexes that Pending,
// Message and Prune use. Its cursors mean nothing (1 to n in every
// group); the client ignores them. A duplicate message id fails the whole
// group commit with a unique violation, not its batch with
// store.ErrExists (the bench sends none).
//
// Trip writes no row: one round trip per group commit whose transaction
// writes one empty transactional record to the write-ahead log
// (pg_logical_emit_message), so that its commit waits for its flush as a
// commit that wrote rows does (a transaction that only took a transaction
// id would not wait: PostgreSQL flushes such a commit in the background).
// It is what a write-ahead to a remote database costs the sender and the
// machine with this client's group commit and stream pattern (the call,
// the flush, the wake-ups, the stream stopping while the group commits),
// with no row at all.
//
// The messages a floor takes never reach xmpptrack_messages: Pending and
// Message find none of them (Session finds the sessions Rows saved). A
// floor is for a throwaway database of one benchmark run.
package pgfloor

import (
	"fmt"
	"strings"
)

// Kind is a floor.
type Kind string

// The floors.
const (
	// Rows: the write-ahead, the changes and the session as plain rows.
	Rows Kind = "rows"
	// Trip: one round trip and an empty commit's flush per group.
	Trip Kind = "trip"
)

// Tables are the tables Rows writes (Install creates them for both kinds).
const (
	WALTable = "xmpptrack_floor_wal" // (id, raw), primary key id
	LogTable = "xmpptrack_floor_log" // (id, state, at, seq), no index
)

// Install returns the SQL statements that turn a database, created by
// store/postgres's Open, into floor k: psql runs them (or any client
// running several statements at once) before the store's first Commit.
// The new xmpptrack_commit keeps the real one's arguments and results,
// read from the database, so that the store calls it unchanged.
func Install(k Kind) (string, error) {
	var body string
	switch k {
	case Rows:
		body = rowsBody
	case Trip:
		body = tripBody
	default:
		return "", fmt.Errorf("pgfloor: unknown floor %q", k)
	}
	return tables + `
DO $do$
DECLARE sig text;
BEGIN
	SELECT pg_get_function_arguments(p.oid) INTO STRICT sig FROM pg_proc p
	WHERE p.proname = 'xmpptrack_commit' AND pg_function_is_visible(p.oid);
	EXECUTE format('CREATE OR REPLACE FUNCTION xmpptrack_commit(%s) LANGUAGE plpgsql AS %L', sig, ` + quote(body) + `);
END
$do$;`, nil
}

// quote is s as an SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

const tables = `
CREATE TABLE ` + WALTable + ` (id text PRIMARY KEY, raw bytea);
CREATE TABLE ` + LogTable + ` (id text NOT NULL, state smallint, at timestamptz, seq bigint);`

// rowsBody is Rows' function body: three inserts at most, over the
// arguments of the real function (see store/postgres).
const rowsBody = `
BEGIN
	IF cardinality(m_id) > 0 THEN
		INSERT INTO ` + WALTable + ` (id, raw) SELECT * FROM unnest(m_id, m_raw);
	END IF;
	IF cardinality(c_lock) + cardinality(w_lock) > 0 THEN
		INSERT INTO ` + LogTable + ` (id, state, at, seq)
		SELECT l_id[u.j], u.st, u.at, NULL FROM unnest(c_lock, c_state, c_at) AS u(j, st, at)
		UNION ALL
		SELECT l_id[u.j], NULL, NULL, u.seq FROM unnest(w_lock, w_seq) AS u(j, seq);
	END IF;
	IF cardinality(s_account) > 0 THEN
		INSERT INTO xmpptrack_sessions
			(account, resource, jid, smid, location, max_s, inbound, outbound, acked, updated)
		SELECT * FROM unnest(s_account, s_resource, s_jid, s_smid, s_location, s_max, s_in, s_out, s_acked, s_updated)
		ON CONFLICT (account, resource) DO UPDATE SET (jid, smid, location, max_s, inbound, outbound, acked, updated) =
			(EXCLUDED.jid, EXCLUDED.smid, EXCLUDED.location, EXCLUDED.max_s, EXCLUDED.inbound, EXCLUDED.outbound,
			EXCLUDED.acked, EXCLUDED.updated);
	END IF;
` + allKeys + `
END`

// tripBody is Trip's: one empty record in the log, no row.
const tripBody = `
BEGIN
	PERFORM pg_logical_emit_message(true, 'xmpptrack_floor', '');
` + allKeys + `
END`

// allKeys answers every creation event and change as written, cursors 1
// to n.
const allKeys = `
	keys := ARRAY(SELECT x FROM unnest(m_key || c_key) AS x ORDER BY x);
	last := cardinality(keys);`
