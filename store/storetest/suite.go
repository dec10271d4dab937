package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Open opens a store. Calls with the same name open the same underlying
// database (another handle, as a second process or instance would); a new
// name is a new, empty database. The suite closes every store it opened.
type Open func(t *testing.T, name string) store.Store

// Run runs the whole suite, each test as a subtest on fresh databases.
func Run(t *testing.T, open Open) {
	for _, tc := range Tests() {
		t.Run(tc.Name, func(t *testing.T) { tc.F(t, open) })
	}
}

// Test is one test of the suite.
type Test struct {
	Name string
	F    func(t *testing.T, open Open)
}

// Tests returns the suite's tests, for an implementation that runs some of
// them again under its own conditions (a fault hook, a slower commit).
func Tests() []Test {
	return []Test{
		{"RoundTrip", testRoundTrip},
		{"EmptyThreadChannel", testEmptyThreadChannel},
		{"Duplicate", testDuplicate},
		{"Monotonic", testMonotonic},
		{"SettleDropsStanza", testSettle},
		{"ConcurrentRecorders", testConcurrentRecorders},
		{"Pending", testPending},
		{"Session", testSession},
		{"FeedOrder", testFeedOrder},
		{"FeedFilters", testFeedFilters},
		{"FeedNeverSkips", FeedNeverSkips},
		{"Wait", testWait},
		{"Retention", testRetention},
		{"PruneKeepsCursors", testPruneKeepsCursors},
		{"Lock", testLock},
		{"Keys", testKeys},
		{"KeyRead", testKeyRead},
		{"KeysWithCommits", testKeysWithCommits},
		{"KeysAcrossClose", testKeysAcrossClose},
		{"Jobs", testJobs},
		{"GroupCommitIsolation", testGroupCommit},
		{"BadInput", testBadInput},
		{"Closed", testClosed},
	}
}

var dbSeq atomic.Int64

// fresh opens a store on a new database named after the test.
func fresh(t *testing.T, open Open) (store.Store, string) {
	t.Helper()
	name := dbName(t)
	return opened(t, open, name), name
}

func dbName(t *testing.T) string {
	n := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("%s_%d", strings.ToLower(n), dbSeq.Add(1))
}

// opened opens name and closes it at cleanup.
func opened(t *testing.T, open Open, name string) store.Store {
	t.Helper()
	s := open(t, name)
	if s == nil {
		t.Fatal("open returned nil")
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	alice  = store.Instance{Account: "alice@example.org", Resource: "bot"}
	alice2 = store.Instance{Account: "alice@example.org", Resource: "bot2"}
	carol  = store.Instance{Account: "carol@example.org"}
)

// msg returns a new message of owner.
func msg(owner store.Instance, id string) store.Message {
	return store.Message{
		ID:    id,
		Owner: owner,
		To:    "bob@example.net",
		Raw:   []byte(`<message to="bob@example.net" id="` + id + `" type="chat"><body>hi</body></message>`),
	}
}

func commit(t *testing.T, s store.Store, b *store.Batch) {
	t.Helper()
	if err := s.Commit(ctxT(t), b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func insert(t *testing.T, s store.Store, ms ...store.Message) []store.Message {
	t.Helper()
	b := &store.Batch{Messages: ms}
	commit(t, s, b)
	return b.Messages
}

// record commits one change and returns it with its cursor.
func record(t *testing.T, s store.Store, id string, st tracking.MessageState, ev store.Evidence) store.Change {
	t.Helper()
	b := &store.Batch{Changes: []store.Change{{ID: id, State: st, Evidence: ev}}}
	commit(t, s, b)
	return b.Changes[0]
}

func get(t *testing.T, s store.Store, id string) store.Record {
	t.Helper()
	r, err := s.Message(ctxT(t), id)
	if err != nil {
		t.Fatalf("Message(%q): %v", id, err)
	}
	return r
}

func states(h []store.Change) []tracking.MessageState {
	out := make([]tracking.MessageState, len(h))
	for i, c := range h {
		out[i] = c.State
	}
	return out
}

func sameTime(a, b time.Time) bool {
	return a.UTC().Truncate(time.Millisecond).Equal(b.UTC().Truncate(time.Millisecond))
}

// all reads the whole feed after a cursor.
func all(t *testing.T, s store.Store, q store.FeedQuery) []store.Change {
	t.Helper()
	var out []store.Change
	for {
		cs, err := s.Changes(ctxT(t), q)
		if err != nil {
			t.Fatalf("Changes: %v", err)
		}
		if len(cs) == 0 {
			return out
		}
		out = append(out, cs...)
		q.After = cs[len(cs)-1].Cursor
	}
}
