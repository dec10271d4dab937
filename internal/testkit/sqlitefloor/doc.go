// Package sqlitefloor is a benchmark instrument, never shipped and never a
// store to use: a store.Store whose Commit does only the least durable work
// that issue 12 (the SQLite store) requires, so that the bench program can
// tell what throughput that work allows on a machine, beside what the real
// store/sqlite gets in the same run (the sender xmpptrack-sqlite-floor).
//
// It wraps a real store/sqlite Store, which serves everything but Commit:
// the ownership lock, the stream-management state and the pending messages
// that Dial reads, Message, the feed, Prune, keys and jobs. Commit writes
// to a second SQLite file of its own (the path with "-floor" appended) on
// the same driver (modernc.org/sqlite), with the same settings as the real
// store's writer (WAL, synchronous=NORMAL by default or FULL, BEGIN
// IMMEDIATE, one writer connection, the process's exclusive file layer on
// Linux, the transaction run on the driver's connection with statements
// prepared once) and through the same group commit (internal/groupcommit,
// a lone caller committing on its own goroutine). Per transaction it
// writes, with multi-row inserts:
//
//   - each new message as a row (id, stanza) of a table whose primary key
//     is its id (the table's rows and that key: two B-trees, as the real
//     store's; a WITHOUT ROWID table, one B-tree, wrote more pages per
//     write-ahead, 2.5 against 2.4, its interior pages holding whole rows),
//     committed before Commit returns, so before the client writes the
//     stanza;
//   - each state change as an appended row (cursor, id, state, time,
//     evidence), the cursor its row number: commit order;
//   - each stream-management sequence number as an appended row (id, seq);
//   - each session, replacing its owner's row.
//
// What it leaves out, and a real store cannot: the message's other
// columns (owner, recipient, room, thread, channel, created, deadline,
// state), a cursor for a message's creation, the check of each change against the transition graph (it
// stores repeats and refused changes too), a message's current state kept
// anywhere but in its changes (reading it is a search), dropping the stanza
// at settling, the listing of pending messages, pruning its own rows,
// schema versions, its own lock, and every read of what it wrote: the
// wrapped store never sees its commits, so a restart with it forgets them.
// Its checkpoints are SQLite's automatic ones (every 1,000 pages, on the
// committing connection) instead of the real store's checkpointer
// goroutine. A duplicate message id fails its batch with store.ErrExists,
// as the interface asks. The sequence numbers have a table of their own
// (package pgfloor appends them to its changes' table): a transaction
// carrying both dirties one more page, in the floor's disfavour.
//
// With Config.Discard, Commit writes nothing at all and returns at once:
// what the client's own durable path (encoding the stored stanza, the
// recorder, the batches) costs without any database, the sender
// xmpptrack-store-discard.
package sqlitefloor
