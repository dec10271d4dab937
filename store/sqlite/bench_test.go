package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// BenchmarkCommit measures the write-ahead of one message per Commit, as
// Send does it: from one goroutine (each commit waits for its own sync) and
// from 64 (group commit), with the default durability and with Sync. Each
// message also gets its DELIVERED_TO_SERVER change committed, as the ack
// would.
func BenchmarkCommit(b *testing.B) {
	for _, cfg := range []struct {
		name string
		sync bool
	}{{"normal", false}, {"fsync", true}} {
		for _, par := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/senders=%d", cfg.name, par), func(b *testing.B) {
				s, err := OpenConfig(context.Background(), filepath.Join(b.TempDir(), "b.db"), Config{Sync: cfg.sync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var n atomic.Int64
				b.SetParallelism(max(1, par/max(1, runtimeProcs())))
				b.ReportAllocs()
				b.ResetTimer()
				if par == 1 {
					for b.Loop() {
						commitOne(b, s, n.Add(1))
					}
				} else {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							commitOne(b, s, n.Add(1))
						}
					})
				}
				b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

func commitOne(b *testing.B, s *Store, i int64) {
	id := fmt.Sprintf("m%012d", i)
	m := message(id)
	m.Raw = make([]byte, 350)
	if err := s.Commit(context.Background(), &store.Batch{Messages: []store.Message{m}}); err != nil {
		b.Fatal(err)
	}
	if err := s.Commit(context.Background(), &store.Batch{Changes: []store.Change{{ID: id, State: tracking.DeliveredToServer}}}); err != nil {
		b.Fatal(err)
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
