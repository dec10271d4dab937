package storetest

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// BenchPost is a benchmark for store implementations: what a gateway's
// POST /v1/messages asks of its store, from 64 goroutines in all, as
// sub-benchmarks "plain" (the write-ahead of a message with a 350-byte
// stanza) and "keyed" (the claim of an Idempotency-Key of its own, 24
// hours, before it). open returns a new store for each; meter, if set,
// starts measuring at the start of the parallel part and returns what
// reports the CPU for the messages written.
func BenchPost(b *testing.B, open func(b *testing.B) store.Store, meter func() func(b *testing.B, msgs int64)) {
	for _, keyed := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "keyed"}[keyed], func(b *testing.B) {
			s := open(b)
			defer s.Close()
			var n atomic.Int64
			var report func(*testing.B, int64)
			if meter != nil {
				report = meter()
			}
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := post(context.Background(), s, fmt.Sprintf("m%012d", n.Add(1)), keyed); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if report != nil {
				report(b, n.Load())
			}
		})
	}
}

// post does what a gateway's POST asks of its store (see BenchPost).
func post(ctx context.Context, s store.Store, id string, keyed bool) error {
	if keyed {
		_, ok, err := s.ClaimKey(ctx, store.Key{Scope: "gateway:bench", Name: id, Value: id, Expires: time.Now().Add(24 * time.Hour)})
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("key %s claimed before", id)
		}
	}
	m := msg(alice, id)
	m.Raw = make([]byte, 350)
	return s.Commit(ctx, &store.Batch{Messages: []store.Message{m}})
}
