package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
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
				cpu := startCPU()
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
				cpu.report(b, n.Load())
			})
		}
	}
}

// BenchmarkLifecycle commits what the client commits for each message:
// the write-ahead, its sequence number with DELIVERED_TO_SERVER, then
// DELIVERED_TO_RECIPIENT and SEEN_BY_RECIPIENT, from 64 goroutines (group
// commit), fsync on. It reports the client's and the database server's
// CPU per message.
func BenchmarkLifecycle(b *testing.B) {
	s, err := Open(context.Background(), benchDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	cpu := startCPU()
	b.ResetTimer()
	b.SetParallelism(benchPar)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := n.Add(1)
			id := fmt.Sprintf("l%012d", i)
			m := msg(id)
			m.Raw = make([]byte, 350)
			for _, bt := range []*store.Batch{
				{Messages: []store.Message{m}},
				{Written: []store.Written{{ID: id, Seq: uint32(i)}}, Changes: []store.Change{{ID: id, State: tracking.DeliveredToServer}}},
				{Changes: []store.Change{{ID: id, State: tracking.DeliveredToRecipient, Evidence: store.Evidence{From: "b@example.org/phone"}}}},
				{Changes: []store.Change{{ID: id, State: tracking.SeenByRecipient, Evidence: store.Evidence{From: "b@example.org/phone"}}}},
			} {
				if err := s.Commit(ctx, bt); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "msgs/s")
	cpu.report(b, n.Load())
}

// cpuMeter measures this process's CPU and the database server's (the
// postmaster and its backends, from /proc) from start to report.
type cpuMeter struct {
	self, db time.Duration
	pid      int
}

func startCPU() cpuMeter {
	pid := 0
	if benchPG.srv != nil {
		pid = benchPG.srv.PID()
	}
	return cpuMeter{self: selfCPU(), db: treeCPU(pid), pid: pid}
}

func (c cpuMeter) report(b *testing.B, msgs int64) {
	if msgs == 0 {
		return
	}
	b.ReportMetric(float64((selfCPU()-c.self).Microseconds())/float64(msgs), "client-µs/msg")
	b.ReportMetric(float64((treeCPU(c.pid)-c.db).Microseconds())/float64(msgs), "db-µs/msg")
}

func selfCPU() time.Duration { return procio.SelfCPU() }

// treeCPU is the user+system CPU of pid and its live children.
func treeCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, d := range dirs {
		data, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 13 {
			continue
		}
		p, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		ppid, _ := strconv.Atoi(f[1])
		if p != pid && ppid != pid {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ
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

var benchPar = func() int {
	n, err := strconv.Atoi(os.Getenv("XMPPTRACK_BENCH_PAR"))
	if err != nil || n <= 0 {
		return 32
	}
	return n
}()
