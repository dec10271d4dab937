package postgres

import (
	"context"
	"fmt"
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
	made map[string]string
}

// database returns the DSN of a database for name, creating it once.
func database(t testing.TB, name string) string {
	t.Helper()
	srv := server(t)
	name = strings.ToLower(name)
	if len(name) > 60 {
		name = fmt.Sprintf("%s_%x", name[:40], len(name))
	}
	dbs.Lock()
	defer dbs.Unlock()
	if dsn, ok := dbs.made[name]; ok {
		return dsn
	}
	dsn, err := srv.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if dbs.made == nil {
		dbs.made = map[string]string{}
	}
	dbs.made[name] = dsn
	return dsn
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
