// Package postgres is the store for several instances sharing one record:
// gateways behind a load balancer, a fleet of bots sending from several
// resources of one account, several accounts. Any instance reads every
// message and the one feed; each instance owns the messages it sent and
// its stream-management state.
//
//	st, err := postgres.Open(ctx, "postgres://xmpptrack@db.example.org/xmpptrack")
//
// # The feed never skips
//
// A follower reads the changes after its cursor in cursor order. With a
// serial column this is a trap: transaction A takes cursor 9, B takes 10, B
// commits first, a follower reads 10 and moves past 9, then A commits and 9
// is never read. Here cursors come from a single-row counter
// (xmpptrack_feed) that each group commit updates as its last step before
// COMMIT: the row lock is held until the transaction ends, so a transaction
// that takes cursors waits until the one that took the previous cursors has
// committed or rolled back (a rollback hands its cursors out again). Cursor
// order is therefore commit order: a follower that sees cursor c sees every
// cursor below c. The price is that group commits of all instances take
// their cursors one at a time; the lock is held only for the insert of the
// group's changes and the commit's flush, and one group commit carries
// many batches.
//
// # One round trip per group commit
//
// A group commit is one call of the server-side function xmpptrack_commit
// (PL/pgSQL, created by the schema migrations), a transaction of its own:
// it inserts the new messages, locks the messages that changes and
// sequence numbers are about, applies the changes (the transition graph is
// an argument, computed from package tracking, so that the two never
// disagree), writes the sessions, and takes the cursors last. A new
// message whose id exists fails the call, which is made again without its
// batch. The committer encodes the call's arguments itself, in
// PostgreSQL's binary format into buffers it keeps from one group commit
// to the next, and runs the call as a statement prepared on each
// connection (pgx's encoding of the same arrays through its type map
// cost BenchmarkLifecycle 40.5 instead of 33.5 µs of client CPU and 64
// instead of 28 allocations per message).
//
// Waiting followers are woken by LISTEN/NOTIFY: each commit that moves the
// feed notifies the channel xmpptrack_feed, and a Store keeps one listening
// connection (reconnecting when it breaks) once it reads the feed (Wait,
// Changes or LastCursor). While that connection is down, or cannot LISTEN
// (a failure the store logs and retries, but Open does not report, since
// it listens only later), Wait looks at the feed every second instead. A Store that never does, such as a client's that
// only records, listens on none: a listening session costs the server a
// transaction at each notification.
//
// # State changes are race-free
//
// A receipt or marker may reach several instances (carbons copy it to every
// resource). A commit locks the messages it changes (SELECT ... FOR UPDATE,
// in id order so that instances never deadlock), applies store.Next to the
// state it finds, and records a change only if the state moves: the same
// evidence recorded twice, or by two instances at once, leaves one history.
//
// # Ownership
//
// Lock takes a session-level advisory lock (pg_try_advisory_lock, keyed by
// a hash of account and resource) on a connection of its own, and records
// the holder (host and pid) in xmpptrack_owners for error messages. The
// lock is a lease that ends with its holder: PostgreSQL releases it when
// the connection ends, which it notices at once when the holder's process
// dies on a live host (the kernel closes the socket) and, when the holder's
// host vanishes, once TCP keepalives give up (tcp_keepalives_* settings of
// the server). The holder checks its connection every second. When it
// broke (the database restarted, the connection was cut, terminated or
// stalled), the lease takes the lock again on a new connection (a stalled
// backend of its own that still holds it, told by its process id and start
// time, is terminated first), and is lost (Lease.Lost closed) only when
// another holder has it or had it meanwhile, which its row in
// xmpptrack_owners tells, or when it cannot be taken again within 30 s (the
// database out of reach: meanwhile the server may drop the connection and
// let another instance in). Until it is taken again, Commit fails on that
// Store, so that nothing is written as an owner that may not be one. A Lock
// that finds the previous holder's row (a holder that died, or whose
// connection broke) holds the lock 3 s before it writes its own row and
// returns, so that a holder still running fails to take the lease again
// and stops first; Lock's context must leave it that time. A server set to
// drop dead connections sooner than 30 s (tcp_keepalives_*,
// tcp_user_timeout) lets another instance in while a holder cut off from
// the database may still run.
//
// # Durability
//
// By default a commit returns once PostgreSQL flushed it to disk. With
// Config.NoSync (synchronous_commit = off) it returns earlier: our process
// dying loses nothing, a crash of the database server may lose the last
// commits. Concurrent Commit calls share one transaction (group commit).
//
// What a message costs the server is mostly per transaction (the flush,
// the call's set-up): a group commit's transaction carries the Commit
// calls that queued while the previous one ran, and the committer waits
// for the callers that the previous transaction answered to come back
// with their next batch (groupcommit's Refill): a service sending from
// many goroutines, each writing ahead, sending and writing ahead again,
// then shares one transaction per round instead of two alternating
// halves. It waits only after a group of 4 or more batches, at most half
// the previous transaction's duration and never more than 2 ms: a
// sequential sender never waits, and a lone Commit after a burst waits
// once. Callers that do not come back (each sending once, such as a web
// service's requests arriving one by one) cannot fill such a wait: after
// a wait that gathered half or less of what it waited for, the committer
// stops waiting for 1, then 2, 4 and at most 8 rounds (a wait that paid
// halves the next pause). How often such callers still wait depends on
// how they arrive: in a model of even and of random arrivals their mean
// Commit latency was about 4% above what it is without waiting (about
// 25% when every round waited), and in a round that waits each of them
// pays the whole wait, so their p99 and maximum latency rise by up to
// half a transaction's duration. On the bench (ejabberd, 32 sending
// goroutines) it took the transactions per message from about 0.06 to
// 0.044; it cut the server's and the sender's CPU per message clearly
// under heavy other load, and within the noise at moderate or no other
// load (see docs/benchmarks.md, "Waiting for the answered callers").
// A Store has one group
// commit in flight: a second one, on a connection of its own, would
// overlap a group's row work with the previous group's flush, but it
// splits the waiting Commit calls between two smaller groups, and
// measured it cost the server a quarter to a half more CPU per message (see
// docs/benchmarks.md), which a busy machine cannot spare. Several
// instances commit their groups independently, and the transactions that
// take cursors (of all instances) flush one after the other, each
// holding the feed's counter row through its flush: PostgreSQL cannot
// flush them together, and commit_delay would only lengthen that hold.
// On the test machine 8 Stores committing one message per transaction
// made 1,100 to 1,900 transactions a second together.
//
// # Setting up a database
//
// The first Open creates the tables (all named xmpptrack_*, in the first
// schema of the role's search_path) and later versions upgrade them; Open
// serializes this between instances with an advisory lock. A database of a
// newer schema is refused with store.ErrNewerSchema. The server must be
// PostgreSQL 12 or later.
//
// Version 6 makes xmpptrack_commit's statements run with generic plans
// (plan_cache_mode); version 7 replaces the function's body by one that
// does the same with fewer PL/pgSQL statements per row (same arguments
// and results). Instances of versions 2 and 6 still running during the
// upgrade keep working, and are refused at their next Open. To go back to
// a release of version 2 or 6, stamp the database with that version again
// (UPDATE xmpptrack_schema SET version = 6, or 2): the function keeps
// version 7's body, which both call with the same arguments and which
// writes what theirs wrote (version 2 ignores plan_cache_mode); the next
// Open of a version-7 release replaces the body again, harmlessly.
// Upgrades run in the schema that holds the tables, whatever the role's
// search_path puts first.
// (Schema versions 3 to 5 existed only on the development branch for an
// hour on 2026-12-06 and were withdrawn; the schema went from version 2 to
// 6. A development database stamped 3, 4 or 5 is refused with
// store.ErrNewerSchema too: drop its xmpptrack_* tables and every
// xmpptrack_commit function (one DROP FUNCTION per overload that \df
// xmpptrack_commit lists, each with its argument types) and let Open
// create them again.)
//
// The role needs:
//
//   - to create the schema: CREATE on the schema; to upgrade it: to own
//     the xmpptrack_* tables and the function xmpptrack_commit (as the
//     role that created them does). A deployment can run the first Open,
//     and the first Open of each new version, with the owner role and the
//     instances with a smaller one;
//   - to run: CONNECT on the database, USAGE on the schema, SELECT, INSERT,
//     UPDATE and DELETE on the tables xmpptrack_*, USAGE on the sequence
//     xmpptrack_messages_n_seq, and EXECUTE on the function
//     xmpptrack_commit (granted to PUBLIC when it is created, as
//     PostgreSQL does for every function). Advisory locks and
//     LISTEN/NOTIFY need no grant.
//
// For example, as the database owner:
//
//	CREATE ROLE xmpptrack LOGIN PASSWORD '...';
//	GRANT CONNECT ON DATABASE app TO xmpptrack;
//	GRANT USAGE ON SCHEMA public TO xmpptrack;
//	GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO xmpptrack;
//	GRANT USAGE ON SEQUENCE xmpptrack_messages_n_seq TO xmpptrack;
//
// Open checks these privileges and fails with ErrPrivileges, naming what
// is missing, rather than at the first write.
//
// # Faults
//
// While the database is unreachable, Commit fails (a Send cannot write
// ahead, and writes nothing to the wire); reads fail, and so does Wait,
// which reads the feed. A group commit is tried again on fresh connections
// when it certainly did not reach the server (or the server ended the
// session, which aborts it). A commit whose connection broke while the
// call ran may have been committed nonetheless (PostgreSQL cannot tell the
// client): the store then waits (up to 10 s) for the server session that
// ran it to finish, on a fresh connection, and looks for the group's new
// messages. All found, the group (one transaction) is committed: Commit
// fails with store.ErrCursorsUnknown for each of its batches, which are
// stored but whose cursors are lost; callers must not commit them again.
// None found, it tries again. Otherwise, or when it cannot find out (a
// group with no new message, such as a recorder's changes alone), Commit
// fails with an error matching store.ErrOutcomeUnknown: the batch may be
// stored. Committing a batch of changes again is harmless: a change that
// does not move the message's state is a no-op, and the states only move
// forward, so a repeat records nothing and moves no follower. (The pool
// checks a connection idle for over a second before using it.)
//
// # Connection poolers
//
// Behind a connection pooler in transaction mode (PgBouncer, ...) the
// store works, but the server session that ran a call in doubt cannot be
// known: the session id a pooler hands out is its own, and the next
// transaction may run on another server session. The store notices a
// pooler when a new connection's session id differs from the server's
// (pg_backend_pid()), and then never tries a call in doubt again: a group
// whose messages are not all found fails with store.ErrOutcomeUnknown.
// A pooler that passed the server's session id through while moving
// transactions between sessions would defeat this check, and is not
// supported. Such a pooler also loses the statements prepared on a
// session (PgBouncer before 1.21, or with max_prepared_statements = 0):
// set default_query_exec_mode=exec in the DSN, and the store sends its
// group commit as an unnamed statement parsed at each call (costing the
// server more CPU), and pgx its other statements likewise. (With any mode
// but the default the group commit is such an unnamed statement, sent with
// the extended protocol: a proxy that speaks only the simple protocol is
// not supported.) A prepared group commit that the server lost anyway
// (DISCARD ALL) is prepared again and the call made once more. LISTEN
// needs a session of its own: the listener must connect to the server, or
// to a pooler in session mode (see Wait for what happens when it cannot
// listen).
//
// # Retention
//
// Settled messages are pruned after Config.Retention (default
// store.DefaultRetention, 7 days), at Open and then hourly, by every
// instance (pruning is idempotent).
package postgres
