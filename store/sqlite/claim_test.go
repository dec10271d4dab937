package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/storetest"
)

// TestGroupClaims: claims in a group with batches. Two claims of one key
// in a group see each other (the second gets the first's value); when the
// group's transaction fails (here a batch of it), each claim is made again
// on its own and answered once; a claim that fails stores nothing.
func TestGroupClaims(t *testing.T) {
	ctx := context.Background()
	errFault := errors.New("fault")
	s, err := OpenConfig(ctx, filepath.Join(t.TempDir(), "s.db"), Config{
		failApply: func(b *store.Batch) error {
			if len(b.Messages) == 1 && b.Messages[0].ID == "bad" {
				return errFault
			}
			return nil
		},
		failClaim: func(k store.Key) error {
			if k.Name == "bad" {
				return errFault
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := func(name, value string) store.Key { return store.Key{Scope: "s", Name: name, Value: value} }
	type want struct {
		v   string
		ok  bool
		err error
	}
	run := func(reqs []*groupcommit.Request, wants []want) {
		t.Helper()
		s.commitGroup(reqs)
		for i, r := range reqs {
			err := r.Wait()
			w := wants[i]
			if w.err != nil {
				if !errors.Is(err, w.err) {
					t.Errorf("request %d: %v, want %v", i, err, w.err)
				}
				continue
			}
			if err != nil || r.Key != nil && (r.Value != w.v || r.Claimed != w.ok) {
				t.Errorf("request %d: %q %v %v, want %q %v", i, r.Value, r.Claimed, err, w.v, w.ok)
			}
		}
	}
	// A group that commits: the second claim of k1 sees the first.
	run([]*groupcommit.Request{
		groupcommit.NewClaim(key("k1", "a")),
		groupcommit.NewRequest(&store.Batch{Messages: []store.Message{message("m1")}}),
		groupcommit.NewClaim(key("k1", "b")),
	}, []want{{"a", true, nil}, {}, {"a", false, nil}})
	// A group whose transaction fails: each request again, on its own.
	run([]*groupcommit.Request{
		groupcommit.NewClaim(key("k2", "c")),
		groupcommit.NewRequest(&store.Batch{Messages: []store.Message{message("bad")}}),
		groupcommit.NewClaim(key("k2", "d")),
		groupcommit.NewClaim(key("bad", "e")),
		groupcommit.NewClaim(key("k1", "f")),
		groupcommit.NewRequest(&store.Batch{Messages: []store.Message{message("m2")}}),
	}, []want{{"c", true, nil}, {err: errFault}, {"c", false, nil}, {err: errFault}, {"a", false, nil}, {}})
	for name, v := range map[string]string{"k1": "a", "k2": "c", "bad": ""} {
		got, ok, err := s.Key(ctx, "s", name)
		if err != nil || ok != (v != "") || got != v {
			t.Errorf("key %s: %q %v %v, want %q", name, got, ok, err, v)
		}
	}
	for _, id := range []string{"m1", "m2"} {
		if _, err := s.Message(ctx, id); err != nil {
			t.Errorf("message %s: %v", id, err)
		}
	}
}

// BenchmarkPost measures what a gateway POST costs the store
// (storetest.BenchPost): the write-ahead alone, and with an
// Idempotency-Key's claim before it. It reports the process's CPU per
// message.
func BenchmarkPost(b *testing.B) {
	storetest.BenchPost(b, func(b *testing.B) store.Store {
		s, err := OpenConfig(context.Background(), filepath.Join(b.TempDir(), "b.db"), Config{})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}, func() func(*testing.B, int64) {
		cpu := procio.SelfCPU()
		return func(b *testing.B, msgs int64) {
			b.ReportMetric(float64((procio.SelfCPU()-cpu).Microseconds())/float64(max(msgs, 1)), "cpu-µs/msg")
		}
	})
}
