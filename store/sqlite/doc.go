// Package sqlite is the embedded store: one SQLite file, written by one
// process, through a pure-Go driver (modernc.org/sqlite: no cgo).
//
//	st, err := sqlite.Open(ctx, "xmpptrack.db")
//
// # Durability
//
// The file is in WAL mode. By default (synchronous=NORMAL) a commit reaches
// the operating system before Commit returns: it survives the process being
// killed (kill -9, an OOM kill), but the last commits before a power loss or
// a kernel crash may be lost. Config.Sync (synchronous=FULL) syncs the WAL
// to disk at every commit, so that every commit also survives power loss.
// Commits are grouped: concurrent Commit calls share one transaction and
// one sync, so writing each message ahead costs a fraction of a sync. A
// Commit that finds no other waiting writes its batch on its own
// goroutine, which spares a lone sender two goroutine switches per commit.
// Checkpoints (copying the WAL into the database file, with its sync) run
// on a goroutine and connection of their own, passive, each time the
// writer has added 1,000 pages (SQLite's automatic threshold), never inside
// a commit; should commits outrun them and the WAL pass 4,000 pages, one
// checkpoint holds the writer while it lets the WAL start over. Open folds
// a WAL left by a killed process into the file before it returns, and
// Close folds the WAL into the file. The writer writes each frame of the
// WAL (SQLite's 24-byte frame header and its page) with one system call
// instead of SQLite's two, through a thin file system layer of this package
// over SQLite's, registered with SQLite as "xmpptrack-pairs-" and the name
// of the layer beneath (walpair.go): the file receives SQLite's writes in
// SQLite's order, and nothing of a commit is left in the process when
// Commit returns.
// Measured costs (BenchmarkCommit and the client's bench) are in the
// repository's docs/benchmarks.md.
//
// # Files
//
// Besides the database file, SQLite keeps path-wal and path-shm next to it
// (no path-shm while a store has the file for its process, see "One
// process"), and Open creates path-lock for its locks and the ownership
// locks: it stays after Close (also after an Open that failed, as does a
// new, empty database file such an Open created), holds no data, and must
// not be deleted while a store has the file open. On Linux a process's
// locks on a file are kept by the file's identity (device and inode), so
// its stores share them, and the ownership locks (in the path-lock of the
// name the first of them opened), under every name of the file: through a
// symlink they share one set; a hard link of a file open in the process is
// refused with store.ErrLocked (SQLite keeps a WAL per name, symlinks
// resolved). Different processes must open the file under one name (its
// resolved name, best): another process's ownership locks are in the
// path-lock of the name it opened, and two processes with Config.Shared on
// two hard links of one file would keep two WALs of it. Open makes a
// relative path absolute first.
// Copy the database only while no process has it open, or, with
// Config.Shared, with SQLite's backup tools: without it a store keeps
// every other SQLite program out of its file, backup tools included.
//
// # Schema and bad files
//
// The database carries SQLite's application id 0x78747263 ("xtrc") and its
// schema version in user_version. Open creates the schema in an empty or new
// file, upgrades an older schema in one transaction, and refuses with a clear
// error, never a panic: a file that is not an SQLite database, or is corrupt
// in its header or schema (store.ErrForeign), an SQLite database of another
// application (store.ErrForeign), and a schema newer than this library
// (store.ErrNewerSchema). Corruption deeper in the file is reported by the
// operation that reads it. A failure that says nothing of the file (Open's
// context ended, an I/O error, the file busy) is reported as it is, never
// as store.ErrForeign, also while Open checks that an upgraded schema
// fits this version's statements. Stop every process that uses the file before a
// newer version of this package opens it: an upgrade rewrites the tables in
// one transaction, which holds the write lock meanwhile (seconds for a
// million records; other processes' commits wait up to their busy timeout),
// and the pages of the old tables become free pages of the file. (Older
// versions share the file with other processes, this one only with
// Config.Shared, see "One process".) From
// schema 4 on, a process still running an older version can still store
// new messages (correctly numbered), but every statement of it that names
// the column schema 4 renamed fails on the upgraded file: its state
// changes, its reads of a message's history and its Prune. Nothing it
// writes is numbered wrongly. (A development build of 2026-12-06 between
// 13:59 and 14:52 UTC stamped files as schema 4 with a trigger instead of
// the rename; Open refuses such a file with store.ErrForeign ("table
// changes has no column named message") and leaves it as it was. Delete
// it, or run DROP TRIGGER changes_cursor; ALTER TABLE changes RENAME
// COLUMN msg TO message on it.) Schema 5 adds a column and a table without
// rewriting the tables, but rebuilds the index of unsettled messages, which
// reads the whole messages table under the write lock. From schema 5 on, a
// message is written ahead without its entry in that index: a later commit
// of state changes adds it once the message is about 4,000 messages behind
// the newest and still unsettled, and raises a mark (listing.upto) to
// that point, so that every unsettled message is in the index or numbered
// above the mark, where the reload after a restart reads the table itself.
// A process still running schema-4 code on the upgraded file keeps
// working, and reads its pending messages by scanning the table instead of
// that index. A file whose listing table does not hold exactly one row is
// refused as damaged (store.ErrForeign). Schema 6 drops the index of
// settled messages by time, which no statement used (Prune reads the
// table): a settling no longer writes an entry of it. A process still
// running schema-5 code on the upgraded file keeps working, but a
// schema-5 binary started again refuses it (store.ErrNewerSchema); to go
// back, run CREATE INDEX messages_settled ON messages (updated) WHERE
// settled = 1; PRAGMA user_version = 5 on it first.
//
// # Errors of the disk
//
// A full disk or a read-only file makes Commit fail with the driver's error
// ("database or disk is full", "attempt to write a readonly database"): the
// batch is not written, nothing else is lost, and commits succeed again once
// there is space. Each failed transaction also replaces the writer's
// connection (SQLite rolled it back already, and the store does not keep a
// connection whose ROLLBACK failed), which costs a reopen.
//
// # One process
//
// On Linux, by default, a store takes its file for its process. Open
// takes open-file-description locks, held by the process's stores on the
// file together until the last of them is closed: a write lock on a byte
// of path-lock that no owner's lock uses (a read lock with Config.Shared),
// which another process of this package takes too, and a write lock on
// the database file's PENDING byte, which every SQLite connection with
// ordinary locking needs to read the file, under any of its names. Another
// process's Open then fails at once with store.ErrLocked, with
// Config.Shared or without, and so does any other SQLite program (the
// sqlite3 tool, its backups included: "database is locked"), until the
// file is closed or its process died (the kernel releases the locks).
// Nothing but the close of those locks' own descriptors releases them, so
// code of the process that opens and closes the database file (a
// checksum) does not let another program in. (SQLite's own locks are POSIX
// record locks, which the kernel drops at any close of any descriptor of
// the file in the process; Open reads the file only through SQLite, and
// its own descriptor of the file, opened for the first store of the
// process on it (holding the PENDING lock), stays open until the last of
// them is closed.) All stores of a process on one file, under any of its
// names, have the same Config.Shared: one with the other fails with
// store.ErrLocked. Behind those locks
// SQLite's "unix-excl" file system layer takes one lock on the file for the
// process and keeps the WAL's index (path-shm) in the process's memory: a
// transaction takes and releases its locks (SQLite's WAL read mark and
// write lock) inside the process, without the six fcntl system calls a
// transaction otherwise costs. The store's own connections (its writer,
// readers and checkpointer) and other Store values of the same process
// share the file as before.
//
// Config.Shared keeps SQLite's ordinary locking: several processes then
// open the file (each with Config.Shared), for instance a follower in
// another process or clients of different accounts, and the ownership
// locks below keep one owner to one process. On other systems a store
// always shares its file, as with Config.Shared, and Lock covers only the
// Store that holds it. Measured (BenchmarkSequential, alternated runs):
// the default costs about 13% less CPU per message than Config.Shared.
//
// # Ownership
//
// Lock takes an operating-system lock (Linux open-file-description locks,
// F_OFD_SETLK) on one byte of path-lock chosen by the owner's hash: it conflicts
// with any other Lock of that owner, in this process or another, and the
// kernel releases it when its holder closes the store or dies, so that a
// restarted process takes its state back at once. On other systems the lock
// only covers the process that holds it.
//
// # Followers
//
// Wait is woken at once by commits made through the same Store value; it
// notices commits by other Store values or (with Config.Shared) processes
// on the same file by checking the file's data version every 25 ms.
//
// # Retention
//
// Settled messages are pruned after Config.Retention (default
// store.DefaultRetention, 7 days), at Open and then hourly.
package sqlite
