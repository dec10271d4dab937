package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/xmpptrack/xmpptrack/store"
)

// appID is SQLite's application_id of an xmpptrack store: "xtrc".
const appID = 0x78747263

// migrations[i] upgrades schema version i to i+1. Released entries are
// never edited: a change to the schema is a new entry.
var migrations = [...]string{
	// 0 → 1: the first release.
	`
CREATE TABLE messages (
	n        INTEGER PRIMARY KEY,           -- commit order
	id       TEXT    NOT NULL UNIQUE,
	account  TEXT    NOT NULL,
	resource TEXT    NOT NULL,
	rcpt     TEXT    NOT NULL,
	room     INTEGER NOT NULL,
	thread   TEXT    NOT NULL,
	channel  TEXT    NOT NULL,
	raw      BLOB,                          -- NULL once settled
	created  INTEGER NOT NULL,              -- Unix microseconds
	deadline INTEGER NOT NULL,              -- 0: none
	seq      INTEGER,                       -- NULL: not written
	state    INTEGER NOT NULL,
	settled  INTEGER NOT NULL,
	updated  INTEGER NOT NULL
);
CREATE INDEX messages_pending ON messages (account, resource, n) WHERE settled = 0;
CREATE INDEX messages_settled ON messages (updated) WHERE settled = 1;
CREATE TABLE changes (
	cursor   INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, in commit order
	msg      INTEGER NOT NULL REFERENCES messages (n) ON DELETE CASCADE,
	state    INTEGER NOT NULL,
	settles  INTEGER NOT NULL,
	at       INTEGER NOT NULL,
	evidence BLOB                               -- see codec.go; NULL: none
);
CREATE INDEX changes_msg ON changes (msg);
CREATE TABLE sessions (
	account  TEXT    NOT NULL,
	resource TEXT    NOT NULL,
	jid      TEXT    NOT NULL,
	smid     TEXT    NOT NULL,
	location TEXT    NOT NULL,
	max      INTEGER NOT NULL,                  -- seconds
	inbound  INTEGER NOT NULL,
	outbound INTEGER NOT NULL,
	acked    INTEGER NOT NULL,
	updated  INTEGER NOT NULL,
	PRIMARY KEY (account, resource)
) WITHOUT ROWID;
CREATE TABLE keys (
	scope   TEXT    NOT NULL,
	name    TEXT    NOT NULL,
	value   TEXT    NOT NULL,
	expires INTEGER NOT NULL,
	PRIMARY KEY (scope, name)
) WITHOUT ROWID;
CREATE TABLE jobs (
	queue    TEXT    NOT NULL,
	name     TEXT    NOT NULL,
	due      INTEGER NOT NULL,
	data     BLOB,
	attempts INTEGER NOT NULL,
	PRIMARY KEY (queue, name)
) WITHOUT ROWID;
CREATE INDEX jobs_due ON jobs (queue, due);
`,
	// 1 → 2: change cursors without AUTOINCREMENT, whose sqlite_sequence
	// row cost every transaction that adds a change one more page written.
	// SQLite gives a new row the highest cursor plus one; the highest cursor
	// ever assigned stays in the table because Prune never deletes its row
	// but turns it into a tombstone (msg 0, which no message has: see
	// pruneChunk). A file whose latest changes were pruned keeps their
	// cursor as such a tombstone, from sqlite_sequence.
	`
CREATE TABLE changes_v2 (
	cursor   INTEGER PRIMARY KEY, -- never reused, in commit order (see above)
	msg      INTEGER NOT NULL,    -- messages.n; 0: a tombstone
	state    INTEGER NOT NULL,
	settles  INTEGER NOT NULL,
	at       INTEGER NOT NULL,
	evidence BLOB                 -- see codec.go; NULL: none
);
INSERT INTO changes_v2 (cursor, msg, state, settles, at, evidence)
	SELECT cursor, msg, state, settles, at, evidence FROM changes;
INSERT INTO changes_v2 (cursor, msg, state, settles, at)
	SELECT seq, 0, 0, 0, 0 FROM sqlite_sequence
	WHERE name = 'changes' AND seq > (SELECT coalesce(max(cursor), 0) FROM changes);
DROP TABLE changes;
ALTER TABLE changes_v2 RENAME TO changes;
CREATE INDEX changes_msg ON changes (msg);
`,
	// 2 → 3: a message's creation, the first entry of its history, is its
	// row instead of a change row: messages.n is that entry's cursor, from
	// the same sequence as the changes' cursors, and first its state (its
	// time is created). A write-ahead then writes a message row and its two
	// index entries, not also a change row and its index entry. A new
	// cursor is the highest n or cursor plus one; Prune keeps the highest as
	// a tombstone change (msg 0) when it deletes what held it, so that
	// cursors stay in commit order and are never reused.
	`
CREATE TABLE messages_v3 (
	n        INTEGER PRIMARY KEY,           -- the cursor of its creation
	id       TEXT    NOT NULL UNIQUE,
	account  TEXT    NOT NULL,
	resource TEXT    NOT NULL,
	rcpt     TEXT    NOT NULL,
	room     INTEGER NOT NULL,
	thread   TEXT    NOT NULL,
	channel  TEXT    NOT NULL,
	created  INTEGER NOT NULL,              -- Unix microseconds
	first    INTEGER NOT NULL,              -- the state it was created in
	deadline INTEGER NOT NULL,              -- 0: none
	seq      INTEGER,                       -- NULL: not written
	state    INTEGER NOT NULL,
	settled  INTEGER NOT NULL,
	updated  INTEGER NOT NULL,
	raw      BLOB                           -- NULL once settled; last, so that
	                                        -- reading the others never walks
	                                        -- its overflow pages
);
CREATE TABLE changes_v3 (
	cursor   INTEGER PRIMARY KEY, -- never reused, in commit order
	msg      INTEGER NOT NULL,    -- messages.n; 0: a tombstone
	state    INTEGER NOT NULL,
	settles  INTEGER NOT NULL,
	at       INTEGER NOT NULL,
	evidence BLOB                 -- see codec.go; NULL: none
);
CREATE TEMP TABLE creations (msg INTEGER PRIMARY KEY, cursor INTEGER NOT NULL);
INSERT INTO creations SELECT msg, min(cursor) FROM changes WHERE msg != 0 GROUP BY msg;
INSERT INTO messages_v3 (n, id, account, resource, rcpt, room, thread, channel, created, first, deadline,
		seq, state, settled, updated, raw)
	SELECT f.cursor, m.id, m.account, m.resource, m.rcpt, m.room, m.thread, m.channel, m.created, c.state,
		m.deadline, m.seq, m.state, m.settled, m.updated, m.raw
	FROM messages m JOIN creations f ON f.msg = m.n JOIN changes c ON c.cursor = f.cursor;
-- A message without a change row (a damaged file: every message was written
-- with its creation's) is numbered above every cursor.
INSERT INTO messages_v3 (n, id, account, resource, rcpt, room, thread, channel, created, first, deadline,
		seq, state, settled, updated, raw)
	SELECT (SELECT coalesce(max(cursor), 0) FROM changes) + row_number() OVER (ORDER BY m.n), m.id, m.account,
		m.resource, m.rcpt, m.room, m.thread, m.channel, m.created, m.state, m.deadline, m.seq, m.state,
		m.settled, m.updated, m.raw
	FROM messages m WHERE m.n NOT IN (SELECT msg FROM creations);
INSERT INTO changes_v3 (cursor, msg, state, settles, at, evidence)
	SELECT c.cursor, f.cursor, c.state, c.settles, c.at, c.evidence
	FROM changes c JOIN creations f ON f.msg = c.msg WHERE c.cursor > f.cursor;
INSERT INTO changes_v3 (cursor, msg, state, settles, at) SELECT cursor, 0, 0, 0, 0 FROM changes WHERE msg = 0;
DROP TABLE creations;
DROP TABLE changes;
DROP TABLE messages;
ALTER TABLE messages_v3 RENAME TO messages;
ALTER TABLE changes_v3 RENAME TO changes;
CREATE INDEX messages_pending ON messages (account, resource, n) WHERE settled = 0;
CREATE INDEX messages_settled ON messages (updated) WHERE settled = 1;
CREATE INDEX changes_msg ON changes (msg);
`,
	// 3 → 4: changes.msg is renamed message. An older version still
	// running on the upgraded file would let SQLite number its changes
	// after the highest change only, at or below a creation a follower may
	// have seen, and its Prune would keep no tombstone for a creation; its
	// statements that name msg (every change, a message's history, Prune)
	// now fail as SQLite prepares them again for the new schema, and
	// nothing is numbered wrong (its new messages still get the highest
	// cursor plus one). It costs a commit nothing (a trigger that checked
	// every change's cursor cost BenchmarkTracked 2.5-10% of its CPU). The
	// index keeps its name, changes_msg. A development build of 2026-12-06
	// stamped files 4 with that trigger instead (see doc.go).
	//
	// A migration that rebuilds a table lists its columns by name: files
	// of schema 3 exist with two physical orders of messages' columns.
	`
ALTER TABLE changes RENAME COLUMN msg TO message;
`,
	// 4 → 5: a write-ahead no longer writes the pending index. A message
	// is inserted unlisted (listed 0: not in messages_pending); the
	// committer lists it (listed 1) in a later transaction that carries
	// state changes, sequence numbers or sessions (a recorder's, shared by
	// many messages) once it is some way behind the newest message, unless
	// it settled meanwhile, and raises listing.upto to that point (see
	// listing in commit.go). So every unsettled message is listed or
	// numbered above listing.upto, and Pending reads both: the index, and
	// the messages above upto (a range of the table, short: the latest
	// ones). A lone sender's write-ahead writes two pages instead of
	// three. Rows written before (and by an older version, which does not
	// know the column) are listed.
	`
ALTER TABLE messages ADD COLUMN listed INTEGER NOT NULL DEFAULT 1;
DROP INDEX messages_pending;
CREATE INDEX messages_pending ON messages (account, resource, n) WHERE settled = 0 AND listed = 1;
CREATE TABLE listing (upto INTEGER NOT NULL);
INSERT INTO listing (upto) SELECT coalesce(max(n), 0) FROM messages;
`,
	// 5 → 6: the index of settled messages by time is dropped. No
	// statement used it (Prune's query, one condition for settled
	// messages or another for expired unsettled ones, scans the table),
	// and each settling wrote an entry of it: an index insert and often
	// a page more in the recorder's transaction. An older version still
	// running on the upgraded file names no index and keeps working. A
	// Prune driven by indexes instead of that scan would need an index of
	// settled messages again (and one for the expired unsettled ones).
	`
DROP INDEX messages_settled;
`,
}

// sqlLastCursor is the highest cursor ever assigned: the highest message
// creation or change (a pruned one is kept as a tombstone, see pruneChunk).
const sqlLastCursor = `max(coalesce((SELECT max(n) FROM messages), 0), coalesce((SELECT max(cursor) FROM changes), 0))`

// SchemaVersion is the schema version this package writes.
const SchemaVersion = len(migrations)

// migrate checks the file and creates or upgrades its schema.
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return openErr(s.path, err)
	}
	defer conn.Close()
	// Look before writing anything: a foreign file stays as it was.
	var id, version, tables int
	if err := conn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&id); err != nil {
		return openErr(s.path, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return openErr(s.path, err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return openErr(s.path, err)
	}
	switch {
	case id == 0 && version == 0 && tables == 0: // new
	case id != appID:
		return fmt.Errorf("sqlite: %s is an SQLite database of another application (application id %#x): %w", s.path, id, store.ErrForeign)
	case version > SchemaVersion:
		return fmt.Errorf("sqlite: %s has schema version %d, this library knows up to %d: %w", s.path, version, SchemaVersion, store.ErrNewerSchema)
	case version < 1:
		return fmt.Errorf("sqlite: %s has no schema version: %w", s.path, store.ErrForeign)
	}
	if version == SchemaVersion {
		if err := s.checkTables(ctx, conn); err != nil {
			return err
		}
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return openErr(s.path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("sqlite: %s: cannot use WAL mode (journal mode %q)", s.path, mode)
	}
	if version == SchemaVersion {
		return nil
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return openErr(s.path, err)
	}
	defer tx.Rollback()
	// Another process may have created the schema meanwhile.
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return openErr(s.path, err)
	}
	if version > SchemaVersion {
		return fmt.Errorf("sqlite: %s has schema version %d, this library knows up to %d: %w", s.path, version, SchemaVersion, store.ErrNewerSchema)
	}
	if version == SchemaVersion {
		return s.checkTables(ctx, tx)
	}
	for v := version; v < SchemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("sqlite: %s: migrating schema %d to %d: %w", s.path, v, v+1, err)
		}
	}
	if f := s.cfg.checkingSchema; f != nil {
		f()
	}
	if err := usable(ctx, tx); err != nil {
		// Rolled back: the file stays as it was.
		if !wrongSchema(err) {
			return openErr(s.path, err)
		}
		return fmt.Errorf("sqlite: %s: schema %d upgraded to %d does not fit this version's statements (%v): %w",
			s.path, version, SchemaVersion, err, store.ErrForeign)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id=%d; PRAGMA user_version=%d", appID, SchemaVersion)); err != nil {
		return openErr(s.path, err)
	}
	if err := tx.Commit(); err != nil {
		return openErr(s.path, err)
	}
	return nil
}

// usable prepares the statements of the commits, of Pending and of a
// message's history in the upgrade's transaction, so that a file whose
// schema only looked like its version (a development build of 2026-12-06
// stamped files 4 without the rename of changes.msg, see doc.go) is
// refused before anything is committed, not stamped with the new version
// and refused later.
func usable(ctx context.Context, tx *sql.Tx) error {
	for _, q := range append(stmtSQL[:], sqlPending, sqlHistory) {
		st, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		st.Close()
	}
	return nil
}

// tables are the tables of the current schema.
var tables = []string{"messages", "changes", "sessions", "keys", "jobs", "listing"}

// querier is *sql.DB, *sql.Conn or *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// checkTables checks that a database of the current version has its tables
// and that they can be read.
func (s *Store) checkTables(ctx context.Context, q querier) error {
	if f := s.cfg.checkingSchema; f != nil {
		f()
	}
	for _, t := range tables {
		var n int64
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+t+" LIMIT 1)").Scan(&n); err != nil {
			if !wrongSchema(err) {
				return openErr(s.path, err)
			}
			return fmt.Errorf("sqlite: %s: damaged schema (table %s: %v): %w", s.path, t, err, store.ErrForeign)
		}
	}
	// listing holds one row (see listing in commit.go).
	var n int64
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM listing").Scan(&n); err != nil && !wrongSchema(err) {
		return openErr(s.path, err)
	} else if err != nil || n != 1 {
		return fmt.Errorf("sqlite: %s: damaged schema (table listing has %d rows, want 1; %v): %w", s.path, n, err, store.ErrForeign)
	}
	return nil
}

// wrongSchema reports whether err is SQLite's refusal of a statement
// (SQLITE_ERROR: no such table or column, say), which says that the
// schema does not fit it. Any other failure (the context's end, an I/O
// error, a file busy or locked, memory) says nothing of the schema: it is
// reported as it is, not as ErrForeign.
func wrongSchema(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_ERROR
}

// openErr turns the driver's complaints about a bad file into ErrForeign.
func openErr(path string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return fmt.Errorf("sqlite: %s is not a usable SQLite database (%v): %w", path, err, store.ErrForeign)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", path, err)
}
