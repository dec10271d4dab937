// Package testserver starts real XMPP servers (Prosody 0.12 and ejabberd 23.01,
// as packaged by Debian) for integration tests, examples and benchmarks.
//
// Each server runs from its own temporary directory on a random 127.0.0.1
// port, with a freshly generated self-signed certificate (offered through
// STARTTLS), stream management, message carbons, message archive management
// (unless [Options].NoMAM), a multi-user chat service on
// conference.localhost, lifted rate limits, and the requested accounts. Any
// number of servers, of either kind, may run at once. [Options].HTTPUpload adds
// an XEP-0363 HTTP File Upload service on upload.localhost, served over plain
// HTTP on another random 127.0.0.1 port ([Server.HTTPAddr]).
//
// # Use
//
// Tests call [Start], which stops the server in t.Cleanup and skips the test
// when the server's binary is missing (but fails it when the CI environment
// variable is "true"). Programs call [Launch] and [Server.Stop] themselves.
//
//	srv := testserver.Start(t, testserver.Prosody, testserver.Options{
//		Accounts: []string{"alice", "bob"},
//	})
//	conn, _ := net.Dial("tcp", srv.Addr())
//	// … STARTTLS with srv.TLSConfig(), log in as srv.JID("alice") with
//	// srv.Password("alice").
//
// # Processes
//
// A server is started in the foreground ("prosody -F", "ejabberdctl
// foreground" run as the ejabberd user, "postgres -D") and stopped by its PID:
// SIGTERM (SIGINT for PostgreSQL), then SIGKILL to its process group after a
// grace period, then the process is reaped and the directory removed. A start
// that fails is stopped so too, but its group gets SIGKILL when the start-up
// bound ([Options].StartTimeout, 60 s for PostgreSQL) ends, or 2 s after
// SIGTERM (SIGINT) where the bound had ended before (a failed start most
// often ends with it): Launch returns within the bound, plus those 2 s, plus
// the moment the kernel takes to reap a killed process. Nothing
// outside the temporary directory is written and only 127.0.0.1 is bound
// (ejabberd also binds its Erlang distribution port on 127.0.0.1; no epmd is
// started).
//
// Servers die with the process that started them, however it ends (SIGKILL,
// a panic, a test timeout): each server process is started into a new process
// group led by a small /bin/sh "reaper" that waits on a pipe only the
// harness's process writes to. When that process dies the kernel closes the
// pipe, and the reaper kills the group (the Erlang VM included, which
// ejabberdctl keeps as a child) and then removes the server's directory.
// PostgreSQL's children leave the group but exit when the postmaster dies.
// Stop ends the reaper too, after killing any straggler of the group.
//
// Ports are picked at random outside the kernel's ephemeral port range, so
// that neither another program's listener on port 0 nor an outgoing
// connection's source port can take them between their choice and the
// server's bind (under a heavy loopback load both did). Processes that use
// this package keep off each other's ports through an flock per port in
// /tmp/xmpptrack-ports (a sticky, world-writable directory; its files are
// never removed, since removing a lock file another process is opening would
// break the exclusion). A port is still free only until the server
// binds it: after start-up the harness checks (through /proc) that the
// listening socket belongs to the server it started, watches the server's log
// of this start for a failed bind while it waits (Prosody runs on without its
// port), and launches again on a new port, up to five times.
//
// # Systems
//
// The harness runs servers on Unix systems: it needs process groups, signals,
// setuid credentials (as root) and flock. Linux adds pidfds (no signal to a
// reused PID), Pdeathsig and /proc (the listener's owner, the Erlang VM's
// PID); elsewhere a descendant is signalled by PID after the same parent
// check where /proc exists, and only the reaper kills a server's group when
// the harness dies. On other systems (Windows) the package compiles, but
// [Available], [PostgresAvailable], [Launch] and [LaunchPostgres] return an
// error wrapping [errors.ErrUnsupported] that says why, so [Start] and
// [StartPostgres] skip the test with that reason (or fail it under CI=true),
// like a missing binary. The harness's own tests of process groups, port
// locks, stops and orphaned servers are built on Unix (or Linux) only; the
// test of a stop after a port taken by another process is skipped where
// there is no /proc to see that.
//
// # Server differences
//
// With NoMAM, Prosody still attaches XEP-0359 stanza-ids to group chat
// messages (mod_muc_mam runs on in-memory storage), but ejabberd does not:
// ejabberd adds stanza-ids only to archived messages, and archiving rooms on
// its default Mnesia storage is what makes MAM slow there. One-to-one messages
// carry no stanza-id on either server without MAM.
//
// Prosody accounts are written to its storage directly (SCRAM-SHA-1 hashed
// credentials, as mod_auth_internal_hashed stores them), before start-up or
// while running. ejabberd accounts are created by in-band registration
// (XEP-0077, enabled for the test server only), in parallel, once its port
// accepts.
package testserver // import "github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
