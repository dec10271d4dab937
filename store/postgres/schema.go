package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/xmpptrack/xmpptrack/store"
)

// migrations[i] upgrades schema version i to i+1. Released entries are
// never edited: a change to the schema is a new entry. Nothing stops the
// instances of the previous version that run while another upgrades the
// database (they are refused only at their next Open): a migration must
// leave the previous version's statements working.
//
// Versions 3 to 5 were on the main branch for an hour on 2026-12-06 and
// withdrawn before any release (see withdrawn): their entries are empty,
// and a database of version 2 goes to version 6 with entry 5.
var migrations = [...]string{
	// 0 → 1: the first release.
	`
CREATE TABLE xmpptrack_messages (
	n        bigserial   PRIMARY KEY,           -- insertion order
	id       text        NOT NULL UNIQUE,
	account  text        NOT NULL,
	resource text        NOT NULL,
	rcpt     text        NOT NULL,
	room     boolean     NOT NULL,
	thread   text        NOT NULL,
	channel  text        NOT NULL,
	raw      bytea,                             -- NULL once settled
	created  timestamptz NOT NULL,
	deadline timestamptz,                       -- NULL: none
	seq      bigint,                            -- NULL: not written
	state    smallint    NOT NULL,
	settled  boolean     NOT NULL,
	updated  timestamptz NOT NULL
);
CREATE INDEX xmpptrack_messages_pending ON xmpptrack_messages (account, resource, n) WHERE NOT settled;
CREATE INDEX xmpptrack_messages_settled ON xmpptrack_messages (updated) WHERE settled;
CREATE TABLE xmpptrack_changes (
	cursor    bigint      PRIMARY KEY,          -- from xmpptrack_feed, in commit order
	msg       bigint      NOT NULL REFERENCES xmpptrack_messages (n) ON DELETE CASCADE,
	state     smallint    NOT NULL,
	settles   boolean     NOT NULL,
	at        timestamptz NOT NULL,
	ev_from   text        NOT NULL DEFAULT '',
	stanza_id text        NOT NULL DEFAULT '',
	condition text        NOT NULL DEFAULT '',
	ev_text   text        NOT NULL DEFAULT ''
);
CREATE INDEX xmpptrack_changes_msg ON xmpptrack_changes (msg);
CREATE TABLE xmpptrack_feed (
	one  boolean PRIMARY KEY DEFAULT true CHECK (one),
	last bigint  NOT NULL                       -- the last cursor handed out
);
INSERT INTO xmpptrack_feed (last) VALUES (0);
CREATE TABLE xmpptrack_sessions (
	account  text        NOT NULL,
	resource text        NOT NULL,
	jid      text        NOT NULL,
	smid     text        NOT NULL,
	location text        NOT NULL,
	max_s    bigint      NOT NULL,
	inbound  bigint      NOT NULL,
	outbound bigint      NOT NULL,
	acked    bigint      NOT NULL,
	updated  timestamptz NOT NULL,
	PRIMARY KEY (account, resource)
);
CREATE TABLE xmpptrack_keys (
	scope   text NOT NULL,
	name    text NOT NULL,
	value   text NOT NULL,
	expires timestamptz,                        -- NULL: never
	PRIMARY KEY (scope, name)
);
CREATE TABLE xmpptrack_jobs (
	queue    text        NOT NULL,
	name     text        NOT NULL,
	due      timestamptz NOT NULL,
	data     bytea,
	attempts integer     NOT NULL,
	PRIMARY KEY (queue, name)
);
CREATE INDEX xmpptrack_jobs_due ON xmpptrack_jobs (queue, due);
CREATE TABLE xmpptrack_owners (
	account  text        NOT NULL,
	resource text        NOT NULL,
	holder   text        NOT NULL,              -- host and pid, for error messages
	since    timestamptz NOT NULL,
	PRIMARY KEY (account, resource)
);
`,
	// 1 → 2: one round trip per group commit. xmpptrack_commit does a
	// group's work in one statement (see commit.go for its arguments); the
	// foreign key of changes is gone (the function locks the message it
	// adds a change to, and Prune deletes the history itself), and the
	// index for pruning is on settled_at (updated as of settling), which
	// changes once, so that the updates before a message settles touch no
	// indexed column and are HOT (no new index entries).
	`
ALTER TABLE xmpptrack_changes DROP CONSTRAINT xmpptrack_changes_msg_fkey;
ALTER TABLE xmpptrack_messages ADD COLUMN settled_at timestamptz; -- NULL until settled
UPDATE xmpptrack_messages SET settled_at = updated WHERE settled;
DROP INDEX xmpptrack_messages_settled;
CREATE INDEX xmpptrack_messages_settled ON xmpptrack_messages (settled_at) WHERE settled_at IS NOT NULL;
ALTER TABLE xmpptrack_messages SET (fillfactor = 70);
CREATE FUNCTION xmpptrack_commit(
	graph int2[], nstates int4,
	m_id text[], m_account text[], m_resource text[], m_rcpt text[], m_room bool[], m_thread text[],
	m_channel text[], m_raw bytea[], m_created timestamptz[], m_deadline timestamptz[], m_state int2[],
	m_settled bool[], m_key int4[],
	l_id text[],
	c_lock int4[], c_state int2[], c_at timestamptz[], c_from text[], c_sid text[], c_cond text[],
	c_text text[], c_key int4[],
	w_lock int4[], w_seq int8[],
	s_account text[], s_resource text[], s_jid text[], s_smid text[], s_location text[], s_max int8[],
	s_in int8[], s_out int8[], s_acked int8[], s_updated timestamptz[],
	OUT keys int4[], OUT last int8)
LANGUAGE plpgsql
-- Every statement here is a keyed lookup. The plans are cached for the
-- session, made while the tables may still be small (statistics come with
-- autovacuum, a minute later): a sequential scan chosen then would scan a
-- growing table at every commit. (JIT is off: it is for long queries, and
-- the costs enable_seqscan adds would trigger it.)
SET enable_seqscan = off
SET jit = off
AS $fn$
DECLARE
	m_n int8[]; got text[];
	ln int8[]; lst int2[]; lset bool[]; lupd timestamptz[]; lseq int8[]; dirty bool[];
	f_key int4[] := '{}'; f_n int8[] := '{}'; f_st int2[] := '{}'; f_set bool[] := '{}';
	f_at timestamptz[] := '{}'; f_from text[] := '{}'; f_sid text[] := '{}'; f_cond text[] := '{}';
	f_text text[] := '{}';
	u_n int8[] := '{}'; u_st int2[] := '{}'; u_set bool[] := '{}'; u_upd timestamptz[] := '{}';
	u_seq int8[] := '{}';
	j int; g int;
BEGIN
	-- 1. New messages; an existing id fails the whole call (XT409, the
	-- ids in DETAIL as a JSON array) and the caller tries again without
	-- its batch.
	IF cardinality(m_id) > 0 THEN
		WITH ins AS (
			INSERT INTO xmpptrack_messages
				(id, account, resource, rcpt, room, thread, channel, raw, created, deadline, state, settled, updated,
				settled_at)
			SELECT u.id, u.account, u.resource, u.rcpt, u.room, u.thread, u.channel,
				CASE WHEN u.settled THEN NULL ELSE u.raw END, u.created, u.deadline, u.state, u.settled, u.created,
				CASE WHEN u.settled THEN u.created END
			FROM unnest(m_id, m_account, m_resource, m_rcpt, m_room, m_thread, m_channel, m_raw, m_created,
				m_deadline, m_state, m_settled) WITH ORDINALITY
				AS u(id, account, resource, rcpt, room, thread, channel, raw, created, deadline, state, settled, o)
			ORDER BY u.o
			ON CONFLICT (id) DO NOTHING RETURNING id, n)
		SELECT array_agg(ins.n ORDER BY u.o), array_agg(u.id) INTO m_n, got
		FROM unnest(m_id) WITH ORDINALITY AS u(id, o) JOIN ins ON ins.id = u.id;
		IF coalesce(cardinality(got), 0) < cardinality(m_id) THEN
			RAISE EXCEPTION 'xmpptrack: message ids exist' USING ERRCODE = 'XT409',
				DETAIL = (SELECT array_to_json(array_agg(x))::text FROM unnest(m_id) AS x
					WHERE NOT (x = ANY (coalesce(got, '{}'))));
		END IF;
		FOR k IN 1 .. cardinality(m_id) LOOP
			f_key := f_key || m_key[k]; f_n := f_n || m_n[k]; f_st := f_st || m_state[k];
			f_set := f_set || m_settled[k]; f_at := f_at || m_created[k]; f_from := f_from || ''::text;
			f_sid := f_sid || ''::text; f_cond := f_cond || ''::text; f_text := f_text || ''::text;
		END LOOP;
	END IF;

	-- 2. Lock the messages that changes and sequence numbers are about, in
	-- id order (concurrent instances cannot deadlock), and read them by
	-- their position in l_id (NULL: unknown).
	IF cardinality(l_id) > 0 THEN
		SELECT array_agg(m.n ORDER BY u.o), array_agg(m.state ORDER BY u.o), array_agg(m.settled ORDER BY u.o)
		INTO ln, lst, lset
		FROM unnest(l_id) WITH ORDINALITY AS u(id, o)
		LEFT JOIN (SELECT x.n, x.id, x.state, x.settled FROM xmpptrack_messages x
			WHERE x.id = ANY (l_id) ORDER BY x.id FOR UPDATE) m ON m.id = u.id;
		lupd := array_fill(NULL::timestamptz, ARRAY[cardinality(l_id)]);
		lseq := array_fill(NULL::int8, ARRAY[cardinality(l_id)]);
		dirty := array_fill(false, ARRAY[cardinality(l_id)]);
		FOR k IN 1 .. cardinality(l_id) LOOP
			IF lst[k] < 0 OR lst[k] >= nstates THEN
				RAISE EXCEPTION 'xmpptrack: message % has state %', l_id[k], lst[k] USING ERRCODE = 'XT422';
			END IF;
		END LOOP;
	END IF;

	-- 3. Apply the changes in order (graph[from * nstates + req + 1]: -1
	-- for no change, else the state reached plus 16 if it settles).
	FOR k IN 1 .. coalesce(cardinality(c_lock), 0) LOOP
		j := c_lock[k];
		CONTINUE WHEN ln[j] IS NULL OR lset[j];
		g := graph[lst[j] * nstates + c_state[k] + 1];
		CONTINUE WHEN g < 0;
		IF g % 16 <> lst[j] THEN
			f_key := f_key || c_key[k]; f_n := f_n || ln[j]; f_st := f_st || (g % 16)::int2;
			f_set := f_set || (g >= 16); f_at := f_at || c_at[k]; f_from := f_from || c_from[k];
			f_sid := f_sid || c_sid[k]; f_cond := f_cond || c_cond[k]; f_text := f_text || c_text[k];
		END IF;
		lst[j] := g % 16; lset[j] := g >= 16; lupd[j] := c_at[k]; dirty[j] := true;
	END LOOP;
	FOR k IN 1 .. coalesce(cardinality(w_lock), 0) LOOP
		j := w_lock[k];
		CONTINUE WHEN ln[j] IS NULL;
		lseq[j] := w_seq[k]; dirty[j] := true;
	END LOOP;
	FOR k IN 1 .. coalesce(cardinality(l_id), 0) LOOP
		IF dirty[k] THEN
			u_n := u_n || ln[k]; u_st := u_st || lst[k]; u_set := u_set || lset[k];
			u_upd := u_upd || lupd[k]; u_seq := u_seq || lseq[k];
		END IF;
	END LOOP;
	IF cardinality(u_n) > 0 THEN
		UPDATE xmpptrack_messages m SET state = u.state, settled = u.settled,
			updated = coalesce(u.updated, m.updated), seq = coalesce(u.seq, m.seq),
			settled_at = CASE WHEN u.settled THEN coalesce(u.updated, m.updated) END,
			raw = CASE WHEN u.settled THEN NULL ELSE m.raw END
		FROM unnest(u_n, u_st, u_set, u_upd, u_seq) AS u(n, state, settled, updated, seq)
		WHERE m.n = u.n;
	END IF;

	-- 4. Sessions (one per owner).
	IF cardinality(s_account) > 0 THEN
		INSERT INTO xmpptrack_sessions
			(account, resource, jid, smid, location, max_s, inbound, outbound, acked, updated)
		SELECT * FROM unnest(s_account, s_resource, s_jid, s_smid, s_location, s_max, s_in, s_out, s_acked, s_updated)
		ON CONFLICT (account, resource) DO UPDATE SET jid = EXCLUDED.jid, smid = EXCLUDED.smid,
			location = EXCLUDED.location, max_s = EXCLUDED.max_s, inbound = EXCLUDED.inbound,
			outbound = EXCLUDED.outbound, acked = EXCLUDED.acked, updated = EXCLUDED.updated;
	END IF;

	-- 5. Cursors, last: the counter row stays locked until the commit, so
	-- that cursors become visible in the order they were handed out.
	keys := '{}';
	IF cardinality(f_key) > 0 THEN
		UPDATE xmpptrack_feed SET last = xmpptrack_feed.last + cardinality(f_key) WHERE one
			RETURNING xmpptrack_feed.last INTO last;
		INSERT INTO xmpptrack_changes (cursor, msg, state, settles, at, ev_from, stanza_id, condition, ev_text)
		SELECT last - cardinality(f_key) + row_number() OVER (ORDER BY u.key), u.n, u.st, u.sets, u.at,
			u.f, u.sid, u.cond, u.txt
		FROM unnest(f_key, f_n, f_st, f_set, f_at, f_from, f_sid, f_cond, f_text)
			AS u(key, n, st, sets, at, f, sid, cond, txt);
		keys := ARRAY(SELECT x FROM unnest(f_key) AS x ORDER BY x);
		PERFORM pg_notify('xmpptrack_feed', last::text);
	END IF;
END
$fn$;
`,
	// 2 → 3, 3 → 4, 4 → 5: withdrawn (see withdrawn).
	"", "", "",
	// 2 → 6: xmpptrack_commit's statements run with generic plans, made
	// once per session. With the default (plan_cache_mode = auto) the
	// planner kept choosing custom plans for them, planning each of them
	// again at every call: about 110 µs of the server's CPU per group
	// commit (BenchmarkCommit/nosync/senders=1, 2 calls per message:
	// 555-585 → 320-390 µs per message). The plans stay keyed lookups
	// (enable_seqscan is off for the function, TestHotQueryPlans). The
	// function keeps its arguments, so that instances of version 2 still
	// running during an upgrade go on calling it.
	`
ALTER FUNCTION xmpptrack_commit(int2[], int4, text[], text[], text[], text[], bool[], text[], text[], bytea[],
	timestamptz[], timestamptz[], int2[], bool[], int4[], text[], int4[], int2[], timestamptz[], text[], text[],
	text[], text[], int4[], int4[], int8[], text[], text[], text[], text[], text[], int8[], int8[], int8[], int8[],
	timestamptz[])
	SET plan_cache_mode = force_generic_plan;
`,
	// 6 → 7: the same function, with fewer PL/pgSQL statements per row
	// (less of the server's CPU per message in grouped commits; see
	// docs/benchmarks.md): the loop over the changes notes which changes move a state (2 array
	// appends instead of 9), the feed rows of new messages and of those
	// changes are built by one SQL statement from the arguments, and the
	// messages are updated from the lock's arrays without a loop. Same
	// arguments and results, so that instances of version 6 still running
	// during an upgrade go on calling it.
	`
CREATE OR REPLACE FUNCTION xmpptrack_commit(
	graph int2[], nstates int4,
	m_id text[], m_account text[], m_resource text[], m_rcpt text[], m_room bool[], m_thread text[],
	m_channel text[], m_raw bytea[], m_created timestamptz[], m_deadline timestamptz[], m_state int2[],
	m_settled bool[], m_key int4[],
	l_id text[],
	c_lock int4[], c_state int2[], c_at timestamptz[], c_from text[], c_sid text[], c_cond text[],
	c_text text[], c_key int4[],
	w_lock int4[], w_seq int8[],
	s_account text[], s_resource text[], s_jid text[], s_smid text[], s_location text[], s_max int8[],
	s_in int8[], s_out int8[], s_acked int8[], s_updated timestamptz[],
	OUT keys int4[], OUT last int8)
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
	m_n int8[]; got text[];
	ln int8[]; lst int2[]; lset bool[]; lupd timestamptz[]; lseq int8[]; dirty bool[];
	r_k int4[] := '{}'; r_g int2[] := '{}'; -- the changes that move a state, and the graph's answer
	nf int; j int; g int; s int;
BEGIN
	-- 1. New messages; an existing id fails the whole call (XT409, the
	-- ids in DETAIL as a JSON array) and the caller tries again without
	-- its batch.
	IF cardinality(m_id) > 0 THEN
		WITH ins AS (
			INSERT INTO xmpptrack_messages
				(id, account, resource, rcpt, room, thread, channel, raw, created, deadline, state, settled, updated,
				settled_at)
			SELECT u.id, u.account, u.resource, u.rcpt, u.room, u.thread, u.channel,
				CASE WHEN u.settled THEN NULL ELSE u.raw END, u.created, u.deadline, u.state, u.settled, u.created,
				CASE WHEN u.settled THEN u.created END
			FROM unnest(m_id, m_account, m_resource, m_rcpt, m_room, m_thread, m_channel, m_raw, m_created,
				m_deadline, m_state, m_settled) WITH ORDINALITY
				AS u(id, account, resource, rcpt, room, thread, channel, raw, created, deadline, state, settled, o)
			ORDER BY u.o
			ON CONFLICT (id) DO NOTHING RETURNING id, n)
		SELECT array_agg(ins.n ORDER BY u.o), array_agg(u.id) INTO m_n, got
		FROM unnest(m_id) WITH ORDINALITY AS u(id, o) JOIN ins ON ins.id = u.id;
		IF coalesce(cardinality(got), 0) < cardinality(m_id) THEN
			RAISE EXCEPTION 'xmpptrack: message ids exist' USING ERRCODE = 'XT409',
				DETAIL = (SELECT array_to_json(array_agg(x))::text FROM unnest(m_id) AS x
					WHERE NOT (x = ANY (coalesce(got, '{}'))));
		END IF;
	END IF;

	-- 2. Lock the messages that changes and sequence numbers are about, in
	-- id order (concurrent instances cannot deadlock), and read them by
	-- their position in l_id (NULL: unknown).
	IF cardinality(l_id) > 0 THEN
		SELECT array_agg(m.n ORDER BY u.o), array_agg(m.state ORDER BY u.o), array_agg(m.settled ORDER BY u.o)
		INTO ln, lst, lset
		FROM unnest(l_id) WITH ORDINALITY AS u(id, o)
		LEFT JOIN (SELECT x.n, x.id, x.state, x.settled FROM xmpptrack_messages x
			WHERE x.id = ANY (l_id) ORDER BY x.id FOR UPDATE) m ON m.id = u.id;
		lupd := array_fill(NULL::timestamptz, ARRAY[cardinality(l_id)]);
		lseq := array_fill(NULL::int8, ARRAY[cardinality(l_id)]);
		dirty := array_fill(false, ARRAY[cardinality(l_id)]);
		FOR k IN 1 .. cardinality(l_id) LOOP
			IF lst[k] < 0 OR lst[k] >= nstates THEN
				RAISE EXCEPTION 'xmpptrack: message % has state %', l_id[k], lst[k] USING ERRCODE = 'XT422';
			END IF;
		END LOOP;
	END IF;

	-- 3. Apply the changes in order (graph[from * nstates + req + 1]: -1
	-- for no change, else the state reached plus 16 if it settles),
	-- noting those that move the state for the feed (step 5).
	FOR k IN 1 .. coalesce(cardinality(c_lock), 0) LOOP
		j := c_lock[k];
		s := lst[j];
		CONTINUE WHEN s IS NULL OR lset[j]; -- unknown (NULL) or settled
		g := graph[s * nstates + c_state[k] + 1];
		CONTINUE WHEN g < 0;
		IF g % 16 <> s THEN
			r_k := r_k || k; r_g := r_g || g::int2;
		END IF;
		lst[j] := g % 16; lset[j] := g >= 16; lupd[j] := c_at[k]; dirty[j] := true;
	END LOOP;
	FOR k IN 1 .. coalesce(cardinality(w_lock), 0) LOOP
		j := w_lock[k];
		CONTINUE WHEN ln[j] IS NULL;
		lseq[j] := w_seq[k]; dirty[j] := true;
	END LOOP;
	IF true = ANY (dirty) THEN
		UPDATE xmpptrack_messages m SET state = u.state, settled = u.settled,
			updated = coalesce(u.updated, m.updated), seq = coalesce(u.seq, m.seq),
			settled_at = CASE WHEN u.settled THEN coalesce(u.updated, m.updated) END,
			raw = CASE WHEN u.settled THEN NULL ELSE m.raw END
		FROM unnest(ln, lst, lset, lupd, lseq, dirty) AS u(n, state, settled, updated, seq, d)
		WHERE u.d AND m.n = u.n;
	END IF;

	-- 4. Sessions (one per owner).
	IF cardinality(s_account) > 0 THEN
		INSERT INTO xmpptrack_sessions
			(account, resource, jid, smid, location, max_s, inbound, outbound, acked, updated)
		SELECT * FROM unnest(s_account, s_resource, s_jid, s_smid, s_location, s_max, s_in, s_out, s_acked, s_updated)
		ON CONFLICT (account, resource) DO UPDATE SET jid = EXCLUDED.jid, smid = EXCLUDED.smid,
			location = EXCLUDED.location, max_s = EXCLUDED.max_s, inbound = EXCLUDED.inbound,
			outbound = EXCLUDED.outbound, acked = EXCLUDED.acked, updated = EXCLUDED.updated;
	END IF;

	-- 5. Cursors, last: the counter row stays locked until the commit, so
	-- that cursors become visible in the order they were handed out. The
	-- feed rows are the new messages' (their first state) and the
	-- changes that moved a state, numbered in the order of their keys.
	keys := '{}';
	nf := coalesce(cardinality(m_n), 0) + cardinality(r_k);
	IF nf > 0 THEN
		UPDATE xmpptrack_feed SET last = xmpptrack_feed.last + nf WHERE one
			RETURNING xmpptrack_feed.last INTO last;
		WITH f AS (
			SELECT u.key, u.n, u.st, u.sets, u.at, ''::text AS fr, ''::text AS sid, ''::text AS cond, ''::text AS txt
			FROM unnest(m_key, m_n, m_state, m_settled, m_created) AS u(key, n, st, sets, at)
			UNION ALL
			SELECT c_key[r.ck], ln[c_lock[r.ck]], (r.cg % 16)::int2, r.cg >= 16, c_at[r.ck], c_from[r.ck],
				c_sid[r.ck], c_cond[r.ck], c_text[r.ck]
			FROM unnest(r_k, r_g) AS r(ck, cg)
		), ins AS (
			INSERT INTO xmpptrack_changes (cursor, msg, state, settles, at, ev_from, stanza_id, condition, ev_text)
			SELECT last - nf + row_number() OVER (ORDER BY f.key), f.n, f.st, f.sets, f.at, f.fr, f.sid, f.cond, f.txt
			FROM f
		)
		SELECT array_agg(f.key ORDER BY f.key) INTO keys FROM f;
		PERFORM pg_notify('xmpptrack_feed', last::text);
	END IF;
END
$fn$;
`,
}

// withdrawn reports a schema version that development builds wrote for an
// hour on 2026-12-06 and no release knows (versions 3 to 5: their
// function and tables are neither version 2's nor version 6's). Open
// refuses such a database as one of a newer schema.
func withdrawn(version int) bool { return version >= 3 && version <= 5 }

// refuse is the error for a database this package does not upgrade.
func refuse(version int) error {
	if withdrawn(version) {
		return fmt.Errorf("postgres: the database has schema version %d, which only development builds wrote "+
			"(drop its xmpptrack_* objects and let Open create them again): %w", version, store.ErrNewerSchema)
	}
	return fmt.Errorf("postgres: the database has schema version %d, this library knows up to %d: %w", version, SchemaVersion, store.ErrNewerSchema)
}

// SchemaVersion is the schema version this package writes.
const SchemaVersion = len(migrations)

// tables are the tables of the current schema, for the privilege check.
var tables = []string{"xmpptrack_messages", "xmpptrack_changes", "xmpptrack_feed", "xmpptrack_sessions",
	"xmpptrack_keys", "xmpptrack_jobs", "xmpptrack_owners"}

// migrationLock is the advisory lock key that serializes migrations of
// instances starting at once.
const migrationLock = 0x78747263_00000001

// migrate creates or upgrades the schema, then checks the privileges.
func (s *Store) migrate(ctx context.Context) error {
	version, err := s.version(ctx, s.pool)
	if err != nil {
		return err
	}
	if version > SchemaVersion || withdrawn(version) {
		return refuse(version)
	}
	if version < SchemaVersion {
		if err := s.upgrade(ctx); err != nil {
			return err
		}
	}
	return s.checkPrivileges(ctx)
}

// querier is a pool, a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// version reads the schema version: 0 for a database without the schema.
func (s *Store) version(ctx context.Context, q querier) (int, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('xmpptrack_schema') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("postgres: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var app string
	var version int
	err := q.QueryRow(ctx, `SELECT app, version FROM xmpptrack_schema`).Scan(&app, &version)
	if err != nil {
		if isPrivilege(err) {
			return 0, privilegeErr(err)
		}
		return 0, fmt.Errorf("postgres: reading xmpptrack_schema (%v): %w", err, store.ErrForeign)
	}
	if app != "xmpptrack" {
		return 0, fmt.Errorf("postgres: xmpptrack_schema belongs to %q: %w", app, store.ErrForeign)
	}
	return version, nil
}

// upgrade runs the missing migrations in one transaction, serialized with
// other instances by an advisory lock.
func (s *Store) upgrade(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	version, err := s.version(ctx, tx) // another instance may have migrated meanwhile
	if err != nil {
		return err
	}
	if version > SchemaVersion || withdrawn(version) {
		return refuse(version)
	}
	if version > 0 {
		// The migrations create and replace objects in the first schema of
		// the search_path: for an upgrade, the schema that holds the tables
		// (else a schema put before it since the first Open would get a
		// second xmpptrack_commit beside the one the instances call).
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', quote_ident(n.nspname), true)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass('xmpptrack_schema')`); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	if version == 0 {
		if _, err := tx.Exec(ctx, `CREATE TABLE xmpptrack_schema (app text NOT NULL, version integer NOT NULL);
			INSERT INTO xmpptrack_schema VALUES ('xmpptrack', 0)`); err != nil {
			return migrateErr(err, 0, 1)
		}
	}
	for v := version; v < SchemaVersion; v++ {
		if migrations[v] == "" {
			continue // withdrawn
		}
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			from := v
			for withdrawn(from) {
				from-- // 2 → 6 is entry 5
			}
			return migrateErr(err, from, v+1)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE xmpptrack_schema SET version = $1`, SchemaVersion); err != nil {
		return migrateErr(err, version, SchemaVersion)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

func migrateErr(err error, from, to int) error {
	if isPrivilege(err) {
		if from > 0 {
			return fmt.Errorf("postgres: upgrading the schema (version %d to %d) must run as the owner of the "+
				"xmpptrack_* tables and of the function xmpptrack_commit (run one Open as that role): %w",
				from, to, privilegeErr(err))
		}
		return fmt.Errorf("postgres: creating the schema (version %d to %d) needs the CREATE privilege on the schema "+
			"(or run the first Open as the tables' owner): %w", from, to, privilegeErr(err))
	}
	return fmt.Errorf("postgres: migrating schema %d to %d: %w", from, to, err)
}

// checkPrivileges refuses a role that cannot use every table, at Open
// rather than at the first write.
func (s *Store) checkPrivileges(ctx context.Context) error {
	var missing []string
	for _, t := range append([]string{"xmpptrack_schema"}, tables...) {
		var ok bool
		err := s.pool.QueryRow(ctx, `SELECT has_table_privilege($1, 'SELECT, INSERT, UPDATE, DELETE')`, t).Scan(&ok)
		if err != nil {
			return fmt.Errorf("postgres: checking privileges: %w", err)
		}
		if !ok {
			missing = append(missing, t)
		}
	}
	var seq bool
	if err := s.pool.QueryRow(ctx, `SELECT has_sequence_privilege('xmpptrack_messages_n_seq', 'USAGE')`).Scan(&seq); err != nil {
		return fmt.Errorf("postgres: checking privileges: %w", err)
	}
	if !seq {
		missing = append(missing, "xmpptrack_messages_n_seq (USAGE)")
	}
	var fn bool
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(bool_and(has_function_privilege(oid, 'EXECUTE')), false)
		FROM pg_proc WHERE proname = 'xmpptrack_commit' AND pg_function_is_visible(oid)`).Scan(&fn); err != nil {
		return fmt.Errorf("postgres: checking privileges: %w", err)
	}
	if !fn {
		missing = append(missing, "function xmpptrack_commit (EXECUTE)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("postgres: the role lacks SELECT, INSERT, UPDATE and DELETE (or what is named) on %s: %w",
			strings.Join(missing, ", "), ErrPrivileges)
	}
	return nil
}

// ErrPrivileges: the role of the DSN lacks a privilege the store needs
// (see the package documentation).
var ErrPrivileges = errors.New("postgres: insufficient privileges")

func isPrivilege(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501"
}

func privilegeErr(err error) error {
	return fmt.Errorf("%w: %v", ErrPrivileges, err)
}
