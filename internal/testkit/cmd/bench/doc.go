// Command bench measures what tracking costs: it starts its own XMPP server
// on loopback (Prosody or ejabberd, through internal/testkit/testserver), logs in a
// responder that answers every receipt request and marks every message
// displayed, and runs the same workload with several senders, each in a
// child process of its own, alternating them round after round (A B C … A B
// C …) so that machine drift hits all alike:
//
//   - xmpptrack: N chat messages, each tracked, with a receipt request and
//     <markable/>; times to all DELIVERED_TO_SERVER, DELIVERED_TO_RECIPIENT
//     and SEEN_BY_RECIPIENT;
//   - plain: a bare mellium session, no stream management, the same
//     messages untracked, counting the receipts and markers that come back:
//     the floor that tracking is measured against;
//   - plain-sm: the same with stream management (package sm on a bare
//     mellium session), the fair floor on Prosody, whose ceiling stream
//     management alone roughly halves;
//   - aioxmpp: aioxmpp 0.13 BasicTrackingService and
//     DeliveryReceiptsService, through the script of internal/testkit/interop;
//   - ceiling, ceiling-sm: several plain senders in parallel, sharing the
//     N messages, without and with stream management: what the server
//     routes on this machine.
//
// The responder marks every message displayed from its handler (-markers
// latest marks only the newest message of each peer every 2 ms, as
// XEP-0333 allows). The xmpptrack sender observes its trackers through
// Config.OnStateChange; the optional sender xmpptrack-poll reads their
// states every 2 ms instead, to tell what observing costs, and the
// optional sender xmpptrack-nocoalesce is xmpptrack with sm's coalescing
// during bursts turned off (internal/smhook.NoCoalesce in its process), to
// compare coalescing on and off in the same binary and the same rounds.
// Likewise xmpptrack-nocarbons is xmpptrack with Config.NoCarbons, and
// xmpptrack-id16 sends with ids of 16 characters it makes itself
// (xmpptrack.NewID, as the plain senders' ids) instead of the client's own
// 22-character ids: what carbons and the ids' length cost the server.
// xmpptrack-id16's own CPU does not tell the ids' length: with an id of
// the caller's, the client's registry keeps a map entry it otherwise
// does without. -server-syscalls counts the server's system calls in
// each run (perf stat on its tracepoints), per message, over the whole
// run; the tracepoints add a little to the server's CPU in such runs.
// One table (senderKinds) gives each sender its accounts, its child's
// role and its flags.
//
// It then measures the <r/> rate of a tracked burst (through a counting
// relay, in separate runs), the time a lone message takes to
// DELIVERED_TO_SERVER against an IQ ping round trip, and the memory of
// 100,000 trackers pending to an offline account (through a Prosody with
// its archive on: without it such messages bounce). The throughput
// comparison runs with message archiving (MAM) off: archiving costs the
// servers far more than anything a client does.
//
// With -offline-n it also sends that many messages to an offline account
// through a Prosody with its archive on, from each -offline-senders sender
// (xmpptrack, xmpptrack-wN with a window of N, plain mellium timed by an IQ
// ping after its last message): how the sending pace affects a server that
// archives. These runs start alike: each has a Prosody of its own on an
// empty data directory, removed after it, and the senders' order changes
// from round to round. Each run reports Prosody's CPU and its share of the
// run's time: Prosody 0.12
// pauses its reading, for as long as it just spent processing, while more
// than one read (8 KiB) waits in its input, so a pace that keeps a deeper
// backlog shows as a lower share, whatever the load.
//
// Per-sender CPU seconds and peak RSS come from the child's rusage
// (os.ProcessState): the whole process, and the workload alone (from the
// first send to the last marker, measured by the child). Everything shares
// the machine's cores, so the report also shows the server's CPU and the
// CPU that processes outside the benchmark took during each run.
//
// Each tracked sender, plain and plain-sm also read the CPU of the XMPP
// server and of the responder over their workload (-watch), each before
// and after its own CPU reading, so that the /proc scans it takes are
// not counted as the sender's. The per-round report gives the server's
// CPU over the whole run and over the workload alone (log-in and log-out
// left out), xmpptrack against plain. With a durable sender (xmpptrack-sqlite,
// xmpptrack-postgres) the report then bounds it: every process's CPU per
// message against the in-memory sender's of the same round, the
// throughput ratio the two cores allow at those costs (an estimate, which
// assumes both rounds keep equally many cores busy: measured ratios can
// exceed it), and the database
// CPU per message a ratio of 0.7 would need; xmpptrack-rN (xmpptrack paced
// at N messages per second) shows what the other processes cost per
// message at a slower pace. xmpptrack-postgres-x2 is bounded against
// xmpptrack-postgres the same way. xmpptrack-postgres-floor and
// xmpptrack-postgres-trip are xmpptrack-postgres on a database that does
// only the least durable work, or only a round trip and an empty commit's
// flush per group commit (internal/testkit/pgfloor): bounded against the
// in-memory sender, and xmpptrack-postgres against them, they say what
// the two cores allow a PostgreSQL store with this client's group commit
// and stream pattern (which they do not vary).
//
// # Use
//
//	go run ./internal/testkit/cmd/bench                  # both servers, N=5000, 5 rounds
//	go run ./internal/testkit/cmd/bench -server prosody -quick
//
// Run with -h for the flags. Everything is printed on standard output at the
// end, as one table followed by the targets; progress goes to standard
// error.
package main // import "github.com/xmpptrack/xmpptrack/internal/testkit/cmd/bench"
