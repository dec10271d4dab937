package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/storetest"
)

// One server for the package's tests (initdb costs seconds); each test
// works in databases of its own.
var pg struct {
	once sync.Once
	srv  *testserver.Postgres
	err  error
}

func TestMain(m *testing.M) {
	if os.Getenv("XMPPTRACK_PG_CHILD") == "locker" {
		childLocker(os.Getenv("XMPPTRACK_PG_DSN"))
		return
	}
	code := m.Run()
	if pg.srv != nil {
		pg.srv.Stop()
	}
	os.Exit(code)
}

// server returns the shared server, starting it on first use.
func server(t testing.TB) *testserver.Postgres {
	t.Helper()
	if err := testserver.PostgresAvailable(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI=true: %v", err)
		}
		t.Skipf("PostgreSQL not available: %v", err)
	}
	pg.once.Do(func() {
		// No fsync: these tests measure nothing about durability.
		pg.srv, pg.err = testserver.LaunchPostgres(context.Background(), testserver.PostgresOptions{NoFsync: true})
	})
	if pg.err != nil {
		t.Fatal(pg.err)
	}
	return pg.srv
}

var dbs struct {
	sync.Mutex
	seq  int
	made map[string]string // a name the running tests gave -> its database
}

// dbName returns the database that the running test calls name, creating
// it on first use. Its real name is name with a number of its own, so that
// each run of a test (go test -count=N) starts on new, empty databases;
// within the test that made it (and its subtests), name stays that
// database.
func dbName(t testing.TB, name string) string {
	t.Helper()
	srv := server(t)
	key := strings.ToLower(name)
	dbs.Lock()
	defer dbs.Unlock()
	if db, ok := dbs.made[key]; ok {
		return db
	}
	dbs.seq++
	base := key
	if len(base) > 48 { // PostgreSQL keeps 63 bytes of a name
		h := fnv.New32a()
		h.Write([]byte(key))
		base = fmt.Sprintf("%s_%08x", base[:39], h.Sum32())
	}
	db := fmt.Sprintf("%s_%d", base, dbs.seq)
	if _, err := srv.CreateDatabase(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	if dbs.made == nil {
		dbs.made = map[string]string{}
	}
	dbs.made[key] = db
	t.Cleanup(func() {
		dbs.Lock()
		delete(dbs.made, key)
		dbs.Unlock()
	})
	return db
}

// database returns the DSN of dbName(t, name).
func database(t testing.TB, name string) string {
	t.Helper()
	return server(t).DSN("", dbName(t, name))
}

func opener(cfg Config) storetest.Open {
	return func(t *testing.T, name string) store.Store {
		s, err := OpenConfig(context.Background(), database(t, name), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) {
	// No pruning in the background: the pruner's first pass at Open,
	// delayed on a loaded machine, would delete the retention test's old
	// messages before its own Prune call counts them.
	storetest.Run(t, opener(Config{Retention: -1}))
}

// TestConformanceExecMode runs the suite with the DSN's query mode that
// the package recommends behind a pooler (default_query_exec_mode=exec):
// the group commit is then an unnamed statement.
func TestConformanceExecMode(t *testing.T) {
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		s, err := OpenConfig(context.Background(), database(t, name)+"&default_query_exec_mode=exec", Config{Retention: -1})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
