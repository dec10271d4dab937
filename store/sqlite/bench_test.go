package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
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

// BenchmarkWriteAhead writes messages ahead one at a time, each waited
// for, as a sequential sender's Send does, with nothing else committing:
// the write-ahead alone (a transaction of its own each). It reports the
// process's CPU per message (cpu-us/msg), the checkpointer's included.
func BenchmarkWriteAhead(b *testing.B) {
	s, err := OpenConfig(context.Background(), filepath.Join(b.TempDir(), "b.db"), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := store.Message{Owner: store.Instance{Account: "a@example.org", Resource: "r"}, To: "b@example.org",
		Raw: make([]byte, 350)}
	var rb [16]byte
	b.ReportAllocs()
	cpu0 := procio.SelfCPU()
	for b.Loop() {
		rand.Read(rb[:])
		m.ID = base64.RawURLEncoding.EncodeToString(rb[:])
		if err := s.Commit(context.Background(), &store.Batch{Messages: []store.Message{m}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((procio.SelfCPU()-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-us/msg")
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

// BenchmarkTracked commits what the client commits for each tracked message
// on a busy stream: 32 goroutines write messages ahead, and one recorder
// commits, as many at a time as are waiting, what the client records for
// them (see benchClient). It reports the process's CPU per message
// (cpu-us/msg) besides the time.
func BenchmarkTracked(b *testing.B) {
	benchClient(b, 32, 0, 1, 2)
}

// BenchmarkSequential commits what the client commits for one sequential
// sender (the bench program's default): each operation writes a message
// ahead and waits for it, as Send does, while the recorder commits what it
// recorded 5 ms after the first of it (the client's gathering, gather in
// the root package). Besides the process's CPU per message (cpu-us/msg)
// it reports the pages written to the WAL per message (pages/msg), the
// write-ahead's latency over the first 65,536 operations
// (wa-mean-us, and at the median, the 90th and the 99th percentile:
// wa-p50-us, wa-p90-us, wa-p99-us), and the recorder's commits: their
// changes and time (rec-changes, rec-us).
func BenchmarkSequential(b *testing.B) {
	benchClient(b, 1, 5*time.Millisecond, 1, 2)
}

// BenchmarkSequentialLagged is BenchmarkSequential with the acks 100
// messages and the receipts and markers 300 messages behind the sender,
// as the bench program's sequential sender on ejabberd sees them: there
// the recorder's commits (about 60 messages each) wrote a message's
// sequence number, its DELIVERED_TO_SERVER and its settling in different
// transactions, 2.5 row updates per message (5,000 messages: 3,933
// sequence numbers alone, 3,489 unsettling changes, 5,000 settlings).
func BenchmarkSequentialLagged(b *testing.B) {
	benchClient(b, 1, 5*time.Millisecond, 100, 300)
}

// benchClient runs BenchmarkTracked and BenchmarkSequential: senders
// goroutines write messages ahead (random ids, a 350-byte stanza), and a
// recorder commits, gather after it was woken, the sequence numbers and
// the DELIVERED_TO_SERVER, then DELIVERED_TO_RECIPIENT and
// SEEN_BY_RECIPIENT changes of the messages, with the stream-management
// state. A sender queues the ack of its message ackLag messages back and
// the receipt and marker of the one rcptLag back (rcptLag > ackLag > 0).
func benchClient(b *testing.B, senders int, gather time.Duration, ackLag, rcptLag int) {
	s, err := OpenConfig(context.Background(), filepath.Join(b.TempDir(), "b.db"), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	owner := store.Instance{Account: "a@example.org", Resource: "r"}
	var (
		mu     sync.Mutex
		queue  []store.Change
		seqs   []store.Written
		seq    uint32
		wake   = make(chan struct{}, 1)
		stop   = make(chan struct{})
		done   = make(chan struct{})
		recN   int
		recCh  int
		recDur time.Duration
	)
	go func() { // the recorder
		defer close(done)
		t := time.NewTimer(time.Hour)
		t.Stop()
		for {
			select {
			case <-wake:
			case <-stop:
				return
			}
			if gather > 0 {
				t.Reset(gather)
				select {
				case <-t.C:
				case <-stop:
					return
				}
			}
			mu.Lock()
			cs, ws, n := queue, seqs, seq
			queue, seqs = nil, nil
			mu.Unlock()
			bt := &store.Batch{Changes: cs, Written: ws, Sessions: []store.Session{{Owner: owner,
				JID: "a@example.org/r", ID: "smid", Outbound: n, Acked: n, Inbound: n}}}
			t0 := time.Now()
			if err := s.Commit(context.Background(), bt); err != nil {
				b.Error(err)
				return
			}
			recN++
			recDur += time.Since(t0)
			recCh += len(cs)
		}
	}()
	raw := make([]byte, 350)
	// send writes a message ahead and queues what the client records for
	// it and for the sender's earlier messages: its sequence number now,
	// the ack of the message ackLag back, the receipt and the marker of the
	// one rcptLag back. prev holds the sender's last rcptLag ids, newest
	// first.
	send := func(prev []string) bool {
		var rb [16]byte
		rand.Read(rb[:])
		id := base64.RawURLEncoding.EncodeToString(rb[:])
		m := store.Message{ID: id, Owner: owner, To: "b@example.org", Raw: raw, Deadline: time.Now().Add(time.Hour)}
		if err := s.Commit(context.Background(), &store.Batch{Messages: []store.Message{m}}); err != nil {
			b.Error(err)
			return false
		}
		mu.Lock()
		seq++
		seqs = append(seqs, store.Written{ID: id, Seq: seq})
		if a := prev[ackLag-1]; a != "" {
			queue = append(queue, store.Change{ID: a, State: tracking.DeliveredToServer})
		}
		if r := prev[rcptLag-1]; r != "" {
			ev := store.Evidence{From: "b@example.org/phone"}
			queue = append(queue, store.Change{ID: r, State: tracking.DeliveredToRecipient, Evidence: ev},
				store.Change{ID: r, State: tracking.SeenByRecipient, Evidence: ev})
		}
		mu.Unlock()
		copy(prev[1:], prev)
		prev[0] = id
		select {
		case wake <- struct{}{}:
		default:
		}
		return true
	}
	var lat []time.Duration
	cpu0 := procio.SelfCPU()
	pages0 := s.written.Load()
	b.ReportAllocs()
	b.ResetTimer()
	if senders == 1 {
		lat = make([]time.Duration, 0, 1<<16)
		prev := make([]string, rcptLag)
		for b.Loop() {
			t0 := time.Now()
			if !send(prev) {
				break
			}
			if len(lat) < cap(lat) {
				lat = append(lat, time.Since(t0))
			}
		}
	} else {
		b.SetParallelism(max(1, senders/runtimeProcs()))
		b.RunParallel(func(pb *testing.PB) {
			prev := make([]string, rcptLag)
			for pb.Next() {
				if !send(prev) {
					return
				}
			}
		})
	}
	close(stop)
	<-done
	// The last changes, so that every message's work is counted.
	mu.Lock()
	last := &store.Batch{Changes: queue, Written: seqs}
	mu.Unlock()
	if err := s.Commit(context.Background(), last); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := procio.SelfCPU() - cpu0
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-us/msg")
	b.ReportMetric(float64(s.written.Load()-pages0)/float64(b.N), "pages/msg")
	if senders > 1 {
		return
	}
	if recN > 0 {
		b.ReportMetric(float64(recDur.Microseconds())/float64(recN), "rec-us")
		b.ReportMetric(float64(recCh)/float64(recN), "rec-changes")
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		b.ReportMetric(float64(sum.Microseconds())/float64(len(lat)), "wa-mean-us")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "wa-p50-us")
		b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "wa-p90-us")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "wa-p99-us")
	}
}
