package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/child"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/storetest"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func msg(id string) store.Message {
	return store.Message{ID: id, Owner: store.Instance{Account: "a@example.org", Resource: "r"}, To: "b@example.org",
		Raw: []byte(`<message id="` + id + `"/>`)}
}

// TestFeedNeverSkipsDelayedCommits runs the suite's never-skipping test
// with every commit held up for a random time after it took its cursors:
// the window in which a serial column lets a follower skip.
func TestFeedNeverSkipsDelayedCommits(t *testing.T) {
	for range 2 {
		storetest.FeedNeverSkips(t, opener(Config{beforeCommit: func() {
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		}}))
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	// A newer schema.
	dsn := database(t, "newer")
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := srv.SQL(ctx, dbName(t, "newer"), `UPDATE xmpptrack_schema SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn); !errors.Is(err, store.ErrNewerSchema) {
		t.Errorf("newer schema: %v", err)
	}
	// Another application's table of the same name.
	if _, err := srv.SQL(ctx, dbName(t, "foreign"), `CREATE TABLE xmpptrack_schema (app text, version int); INSERT INTO xmpptrack_schema VALUES ('other', 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, database(t, "foreign")); !errors.Is(err, store.ErrForeign) {
		t.Errorf("foreign table: %v", err)
	}
	// A role that may not create tables, on an empty database. Roles
	// belong to the server: each run of the test makes its own.
	empty := dbName(t, "empty")
	weak := "weak_" + strings.TrimPrefix(empty, "empty_")
	if _, err := srv.SQL(ctx, empty, `CREATE ROLE `+weak+` LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC;
		REVOKE ALL ON DATABASE `+empty+` FROM PUBLIC; GRANT CONNECT ON DATABASE `+empty+` TO `+weak+`;`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, srv.DSN(weak, empty)); !errors.Is(err, ErrPrivileges) || !strings.Contains(err.Error(), "CREATE") {
		t.Errorf("no CREATE: %v", err)
	}
	// The schema exists (made by the owner), but the role has no grants.
	s, err = Open(ctx, database(t, "empty"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := srv.SQL(ctx, empty, `GRANT USAGE ON SCHEMA public TO `+weak); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, srv.DSN(weak, empty)); !errors.Is(err, ErrPrivileges) || !strings.Contains(err.Error(), "xmpptrack_") {
		t.Errorf("no grants: %v", err)
	}
	// The documented minimal grants are enough for everything.
	if _, err := srv.SQL(ctx, empty, `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+weak+`;
		GRANT USAGE ON SEQUENCE xmpptrack_messages_n_seq TO `+weak); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, srv.DSN(weak, empty))
	if err != nil {
		t.Fatalf("with the minimal grants: %v", err)
	}
	defer s.Close()
	b := &store.Batch{Messages: []store.Message{msg("m1")}, Changes: []store.Change{{ID: "m1", State: tracking.DeliveredToServer}}}
	if err := s.Commit(ctx, b); err != nil {
		t.Fatalf("commit with the minimal grants: %v", err)
	}
	l, err := s.Lock(ctx, msg("").Owner)
	if err != nil {
		t.Fatalf("lock with the minimal grants: %v", err)
	}
	l.Release()
	if _, err := s.Prune(ctx, time.Now()); err != nil {
		t.Fatalf("prune with the minimal grants: %v", err)
	}
	if _, err := s.ClaimJobs(ctx, "q", time.Now(), time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	// Bad DSNs.
	if _, err := Open(ctx, "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"); err == nil {
		t.Error("opened an unreachable server")
	}
	if _, err := Open(ctx, "host=%%%"); err == nil {
		t.Error("opened a malformed DSN")
	}
	if _, err := Open(ctx, srv.DSN("", "no_such_database")); err == nil {
		t.Error("opened a missing database")
	}
}

// childLocker takes a lease, says so, and waits to be killed.
func childLocker(dsn string) {
	s, err := Open(context.Background(), dsn)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if _, err := s.Lock(context.Background(), msg("").Owner); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	select {}
}

// TestLeaseEndsWithItsHolder: another process's lease refuses ours while
// it lives, names its holder, and ends when the process is killed.
func TestLeaseEndsWithItsHolder(t *testing.T) {
	ctx := context.Background()
	dsn := database(t, "lease")
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cmd, sc := child.Start(t, nil, "^$", "XMPPTRACK_PG_CHILD=locker", "XMPPTRACK_PG_DSN="+dsn)
	if !sc.Scan() || sc.Text() != "locked" {
		t.Fatalf("child: %q", sc.Text())
	}
	_, err = s.Lock(ctx, msg("").Owner)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Fatalf("while the child holds it: %v", err)
	}
	cmd.Process.Kill() // SIGKILL: no release
	cmd.Wait()
	// The server notices the closed socket at once, but asynchronously.
	var l store.Lease
	for deadline := time.Now().Add(10 * time.Second); ; {
		if l, err = s.Lock(ctx, msg("").Owner); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Release()
}

// cutLease terminates the connections of the database name that hold an
// advisory lock: the lease's, as a restart or a network cut would end it.
func cutLease(t *testing.T, name string) {
	t.Helper()
	if _, err := server(t).SQL(context.Background(), dbName(t, name), `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted`); err != nil {
		t.Fatal(err)
	}
}

// heldRetake is a Config whose leases' attempts to be taken again wait
// for release; entered gets a value at each attempt.
func heldRetake() (cfg Config, entered chan struct{}, release func()) {
	entered, free := make(chan struct{}, 64), make(chan struct{})
	cfg.beforeRetake = func() {
		entered <- struct{}{}
		<-free
	}
	return cfg, entered, sync.OnceFunc(func() { close(free) })
}

// TestLeaseTakenAgain: when the lease's connection is cut and nobody else
// takes the lock, the lease is taken again on a new connection: not lost,
// another holder is refused, and commits, refused meanwhile, go on.
func TestLeaseTakenAgain(t *testing.T) {
	ctx := context.Background()
	dsn := database(t, "leaseagain")
	cfg, entered, release := heldRetake()
	s, err := OpenConfig(ctx, dsn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer release()
	l, err := s.Lock(ctx, msg("").Owner)
	if err != nil {
		t.Fatal(err)
	}
	cutLease(t, "leaseagain")
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the cut lease was not taken again")
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("meanwhile")}}); !errors.Is(err, errLeaseSuspended) {
		t.Fatalf("Commit while the lease is being taken again: %v, want errLeaseSuspended", err)
	}
	release()
	other, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for deadline := time.Now().Add(30 * time.Second); s.suspended.Load() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lease was not taken again")
		}
	}
	select {
	case <-l.Lost():
		t.Fatal("Lost closed, though nobody else took the lease")
	default:
	}
	if _, err := other.Lock(ctx, msg("").Owner); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("another holder after the lease was taken again: %v, want ErrLocked", err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("after")}}); err != nil {
		t.Fatalf("Commit once the lease was taken again: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// TestLeaseLost: when the lease's connection is cut and another holder
// takes the lock before it is taken again, or takes it and releases it
// meanwhile, Lost says so, and the other holder's Lock waits for the
// previous one (its row left behind) before it returns.
func TestLeaseLost(t *testing.T) {
	for _, released := range []bool{false, true} {
		name := map[bool]string{false: "held", true: "released"}[released]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := "leaselost" + name
			dsn := database(t, db)
			cfg, entered, release := heldRetake()
			s, err := OpenConfig(ctx, dsn, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			defer release()
			l, err := s.Lock(ctx, msg("").Owner)
			if err != nil {
				t.Fatal(err)
			}
			cutLease(t, db)
			select {
			case <-entered:
			case <-time.After(30 * time.Second):
				t.Fatal("the cut lease was not taken again")
			}
			other, err := OpenConfig(ctx, dsn, Config{takeover: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			var ol store.Lease
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				start := time.Now()
				if ol, err = other.Lock(ctx, msg("").Owner); err == nil {
					if d := time.Since(start); d < 50*time.Millisecond {
						t.Errorf("Lock of a lease its holder did not release returned after %v, before the takeover wait", d)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("another holder after the cut: %v", err)
				}
			}
			if released {
				if err := ol.Release(); err != nil {
					t.Fatal(err)
				}
			}
			release()
			select {
			case <-l.Lost():
			case <-time.After(30 * time.Second):
				t.Fatal("Lost not closed after another holder took the lease")
			}
			if err := l.Release(); err != nil {
				t.Errorf("releasing a lost lease: %v", err)
			}
		})
	}
}

// TestDatabaseDown stops PostgreSQL in the middle: commits fail (nothing is
// written), and once it is back, commits succeed and waiting followers are
// woken again through a new LISTEN connection.
func TestDatabaseDown(t *testing.T) {
	ctx := context.Background()
	srv := testserver.StartPostgres(t, testserver.PostgresOptions{NoFsync: true})
	dsn, err := srv.CreateDatabase(ctx, "down")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reader, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("before")}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Halt(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err = s.Commit(cctx, &store.Batch{Messages: []store.Message{msg("during")}})
	cancel()
	if err == nil {
		t.Fatal("committed while the database was down")
	}
	if err := srv.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(ctx, "during"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the failed commit left %v", err)
	}
	last, err := reader.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	woken := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		woken <- reader.Wait(wctx, last)
	}()
	b := &store.Batch{Messages: []store.Message{msg("after")}}
	for deadline := time.Now().Add(20 * time.Second); ; { // the pool reconnects on demand
		if err = s.Commit(ctx, b); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after the database came back: %v", err)
	}
	if err := <-woken; err != nil {
		t.Fatalf("follower not woken after the restart: %v", err)
	}
}

var lazyRuns atomic.Int64

// TestListenOnlyToFollow: a Store that only writes holds no listening
// session (each one costs the server a transaction per notification); a
// Store that reads the feed starts one, and a commit through another Store
// wakes its Wait.
func TestListenOnlyToFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := server(t)
	dsn := database(t, "listen_to_follow")
	listeners := func() string {
		t.Helper()
		out, err := srv.SQL(ctx, dbName(t, "listen_to_follow"), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN xmpptrack_feed'`)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	w, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	up := make(chan struct{}, 1)
	f, err := OpenConfig(ctx, dsn, Config{listening: func() {
		select {
		case up <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id := fmt.Sprintf("lazy%d-", lazyRuns.Add(1)) // a new id at each run (-count)
	if err := w.Commit(ctx, &store.Batch{Messages: []store.Message{msg(id + "1")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Message(ctx, id+"1"); err != nil {
		t.Fatal(err)
	}
	if n := listeners(); n != "0" {
		t.Fatalf("%s listening sessions before anyone read the feed, want 0", n)
	}
	last, err := f.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	<-up
	if n := listeners(); n != "1" {
		t.Fatalf("%s listening sessions once a Store read the feed, want 1", n)
	}
	woke := make(chan error, 1)
	go func() { woke <- f.Wait(ctx, last) }()
	if err := w.Commit(ctx, &store.Batch{Messages: []store.Message{msg(id + "2")}}); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// TestWaitWithoutListener: a follower whose listener cannot connect (its
// role may hold one connection, which the pool has) still sees other
// instances' commits: Wait polls the feed while nobody listens.
func TestWaitWithoutListener(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := server(t)
	db := dbName(t, "no_listener")
	dsn := database(t, "no_listener")
	w, err := Open(ctx, dsn) // creates the schema
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// A role of its own at each run of the test: roles belong to the
	// server, and a connection of the last run may still hold its one.
	role := "one_conn_" + strings.TrimPrefix(db, "no_listener_")
	if _, err := srv.SQL(ctx, db, `CREATE ROLE `+role+` LOGIN CONNECTION LIMIT 1;
		GRANT USAGE ON SCHEMA public TO `+role+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+role+`;
		GRANT USAGE ON SEQUENCE xmpptrack_messages_n_seq TO `+role); err != nil {
		t.Fatal(err)
	}
	var listened atomic.Bool
	f, err := OpenConfig(ctx, srv.DSN(role, db), Config{MaxConns: 1, Retention: -1,
		listening: func() { listened.Store(true) }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last, err := f.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	woke := make(chan error, 1)
	go func() { woke <- f.Wait(ctx, last) }()
	id := fmt.Sprintf("nolisten%d", lazyRuns.Add(1))
	if err := w.Commit(ctx, &store.Batch{Messages: []store.Message{msg(id)}}); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatalf("Wait while the listener cannot connect: %v", err)
	}
	if listened.Load() {
		t.Fatal("the listener listened: the test proves nothing")
	}
}
