package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// The benchmarks' server has fsync on, as a production server does.
var benchPG struct {
	once sync.Once
	srv  *testserver.Postgres
	err  error
	n    atomic.Int64
}

func benchDSN(b *testing.B) string {
	if err := testserver.PostgresAvailable(); err != nil {
		b.Skip(err)
	}
	benchPG.once.Do(func() {
		benchPG.srv, benchPG.err = testserver.LaunchPostgres(context.Background(), testserver.PostgresOptions{})
	})
	if benchPG.err != nil {
		b.Fatal(benchPG.err)
	}
	dsn, err := benchPG.srv.CreateDatabase(context.Background(), fmt.Sprintf("bench%d", benchPG.n.Add(1)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if pg.srv == nil && benchPG.srv != nil { // TestMain stops pg.srv only
			benchPG.srv.Stop()
			benchPG.once = sync.Once{}
		}
	})
	return dsn
}

// BenchmarkCommit measures the write-ahead of one message per Commit plus
// its DELIVERED_TO_SERVER change, from one goroutine (each commit waits for
// its own flush) and from 64 (group commit), with the default durability
// and with NoSync.
func BenchmarkCommit(b *testing.B) {
	for _, cfg := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		for _, par := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/senders=%d", cfg.name, par), func(b *testing.B) {
				s, err := OpenConfig(context.Background(), benchDSN(b), Config{NoSync: cfg.noSync})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var n atomic.Int64
				b.ResetTimer()
				if par == 1 {
					for b.Loop() {
						commitOne(b, s, n.Add(1))
					}
				} else {
					b.SetParallelism(par)
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
	m := msg(id)
	m.Raw = make([]byte, 350)
	if err := s.Commit(context.Background(), &store.Batch{Messages: []store.Message{m}}); err != nil {
		b.Fatal(err)
	}
	if err := s.Commit(context.Background(), &store.Batch{Changes: []store.Change{{ID: id, State: tracking.DeliveredToServer}}}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFollowerLatency measures how long after Commit returned on one
// instance a follower on another instance (its own Store, woken by
// LISTEN/NOTIFY) has read the change, and reports the median and the 99th
// percentile.
func BenchmarkFollowerLatency(b *testing.B) {
	dsn := benchDSN(b)
	ctx := context.Background()
	w, err := Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	f, err := Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		last, err := f.LastCursor(ctx)
		if err != nil {
			b.Fatal(err)
		}
		seen := make(chan time.Time, 1)
		go func() {
			after := last
			for {
				if err := f.Wait(ctx, after); err != nil {
					b.Error(err)
					return
				}
				cs, err := f.Changes(ctx, store.FeedQuery{After: after})
				if err != nil {
					b.Error(err)
					return
				}
				if len(cs) > 0 {
					seen <- time.Now()
					return
				}
			}
		}()
		bt := &store.Batch{Messages: []store.Message{msg(fmt.Sprint("f", i))}}
		if err := w.Commit(ctx, bt); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		lat = append(lat, max(0, (<-seen).Sub(committed)))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
