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
// never edited: a change to the schema is a new entry.
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
	if version > SchemaVersion {
		return fmt.Errorf("postgres: the database has schema version %d, this library knows up to %d: %w", version, SchemaVersion, store.ErrNewerSchema)
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
	if version > SchemaVersion {
		return fmt.Errorf("postgres: the database has schema version %d, this library knows up to %d: %w", version, SchemaVersion, store.ErrNewerSchema)
	}
	if version == 0 {
		if _, err := tx.Exec(ctx, `CREATE TABLE xmpptrack_schema (app text NOT NULL, version integer NOT NULL);
			INSERT INTO xmpptrack_schema VALUES ('xmpptrack', 0)`); err != nil {
			return migrateErr(err, 0)
		}
	}
	for v := version; v < SchemaVersion; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return migrateErr(err, v)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE xmpptrack_schema SET version = $1`, SchemaVersion); err != nil {
		return migrateErr(err, SchemaVersion-1)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

func migrateErr(err error, from int) error {
	if isPrivilege(err) {
		return fmt.Errorf("postgres: creating the schema (version %d to %d) needs the CREATE privilege on the schema "+
			"(or run the first Open as the tables' owner): %w", from, from+1, privilegeErr(err))
	}
	return fmt.Errorf("postgres: migrating schema %d to %d: %w", from, from+1, err)
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
	if len(missing) > 0 {
		return fmt.Errorf("postgres: the role lacks SELECT, INSERT, UPDATE and DELETE on %s: %w",
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
