package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/pgfloor"
	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
	"github.com/xmpptrack/xmpptrack/internal/testkit/sqlitefloor"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/postgres"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Milestones, by their rank in the order InTransit < DeliveredToServer <
// DeliveredToRecipient < SeenByRecipient.
const (
	msServer = 1 + iota
	msRecipient
	msSeen
	numMilestones
)

// storeSQLite is the -store value for Config.Store on an SQLite file in a
// temporary directory (default durability: it survives kill -9).
const storeSQLite = "sqlite"

// storeSQLiteFloor is the -store value for Config.Store on the floor
// instrument of internal/testkit/sqlitefloor, in a temporary directory.
const storeSQLiteFloor = "sqlite-floor"

// storeDiscard is the -store value for that instrument with Discard: it
// writes nothing.
const storeDiscard = "discard"

// storePostgres is the -store value for Config.Store on a PostgreSQL 15
// started for the run (fsync on, the default durability); followed by "-"
// and a pgfloor.Kind, on that floor.
const storePostgres = "postgres"

// storePostgresNoSync is storePostgres with postgres.Config.NoSync.
const storePostgresNoSync = storePostgres + "-nosync"

// postgresStore reports a -store value on PostgreSQL, and its floor (""
// for the real store).
func postgresStore(v string) (floor pgfloor.Kind, ok bool) {
	if v == storePostgres || v == storePostgresNoSync {
		return "", true
	}
	k, ok := strings.CutPrefix(v, storePostgres+"-")
	return pgfloor.Kind(k), ok
}

// milestones counts, through Config.OnStateChange (no memory per
// message), how many messages reached each milestone or a later one, and
// when the last of n did.
type milestones struct {
	n       int64
	t0      atomic.Int64 // UnixNano of the first send
	count   [numMilestones]atomic.Int64
	at      [numMilestones]atomic.Int64  // ns after t0 when count reached n
	reached [numMilestones]chan struct{} // closed when count reached n
	failed  atomic.Int64                 // Aborted, TimedOut, Closed, Error
	// lastRecip is when the latest message reached DeliveredToRecipient
	// (ns after t0), complete or not.
	lastRecip atomic.Int64
	done      chan struct{} // closed when every message settled
	settle    atomic.Int64
}

func newMilestones(n int) *milestones {
	m := &milestones{n: int64(n), done: make(chan struct{})}
	for k := range m.reached {
		m.reached[k] = make(chan struct{})
	}
	return m
}

func rank(s tracking.MessageState) int {
	switch s {
	case tracking.InTransit, tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.SeenByRecipient:
		return int(s)
	}
	return -1
}

// change is the OnStateChange hook.
func (m *milestones) change(_ *tracking.MessageTracker, from, to tracking.MessageState, _ *tracking.Response) {
	r := rank(to)
	if r < 0 {
		m.failed.Add(1)
		m.settled()
		return
	}
	for k := max(rank(from)+1, msServer); k <= r; k++ {
		if k == msRecipient {
			m.lastRecip.Store(time.Now().UnixNano() - m.t0.Load())
		}
		if m.count[k].Add(1) == m.n {
			m.at[k].Store(time.Now().UnixNano() - m.t0.Load())
			close(m.reached[k])
		}
	}
	if r == msSeen {
		m.settled()
	}
}

// progress returns a number that grows with every change.
func (m *milestones) progress() int64 {
	return m.count[msServer].Load() + m.count[msRecipient].Load() + m.count[msSeen].Load() + m.failed.Load()
}

func (m *milestones) settled() {
	if m.settle.Add(1) == m.n {
		close(m.done)
	}
}

// fill copies the counts and times into res.
func (m *milestones) fill(res *result) {
	at := func(k int) float64 { return seconds(time.Duration(m.at[k].Load())) }
	res.ToServer, res.ToRecipient, res.Seen = at(msServer), at(msRecipient), at(msSeen)
	res.CntServer = int(m.count[msServer].Load())
	res.CntRecip = int(m.count[msRecipient].Load())
	res.CntSeen = int(m.count[msSeen].Load())
	res.Failed = int(m.failed.Load())
	res.LastRecip = seconds(time.Duration(m.lastRecip.Load()))
	res.Complete = res.CntSeen == res.N && res.Failed == 0
}

// Ways the tracked sender observes its trackers (the -observe flag).
const (
	observeHook = "hook" // Config.OnStateChange, the documented way
	observePoll = "poll" // reading every tracker's state every pollEvery
)

// pollEvery is the period of observePoll.
const pollEvery = 2 * time.Millisecond

// poll observes trackers without any callback: every pollEvery it reads
// the state of each (an atomic load) and records when all of them reached
// each milestone. It costs about 5 µs per 5,000 trackers and poll, and
// gives times to within pollEvery.
func (m *milestones) poll(ctx context.Context, trackers []*tracking.MessageTracker, sent *atomic.Int64) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var count [numMilestones]int64
		var failed int64
		for _, t := range trackers[:sent.Load()] {
			r := rank(t.State())
			if r < 0 {
				failed++
			}
			for k := msServer; k <= r; k++ {
				count[k]++
			}
		}
		now := time.Now().UnixNano() - m.t0.Load()
		if count[msRecipient] > m.count[msRecipient].Load() {
			m.lastRecip.Store(now)
		}
		m.failed.Store(failed)
		for k := msServer; k < numMilestones; k++ {
			if m.count[k].Swap(count[k]) < m.n && count[k] == m.n {
				m.at[k].Store(now)
				close(m.reached[k])
			}
		}
		if count[msSeen]+failed >= m.n {
			close(m.done)
			return
		}
	}
}

// dialTracked logs in the first account of a with an xmpptrack client.
func dialTracked(ctx context.Context, a *childArgs, cfg xmpptrack.Config) (*xmpptrack.Client, error) {
	j, err := jid.Parse(a.jids[0])
	if err != nil {
		return nil, err
	}
	cfg.Addr = a.addr
	if cfg.TLSConfig, err = a.tlsConfig(); err != nil {
		return nil, err
	}
	cfg.AllowPlaintext = cfg.TLSConfig == nil
	return xmpptrack.Dial(ctx, j, a.passwords[0], &cfg)
}

// runTracked sends n tracked messages to the responder and waits until
// every one is SEEN_BY_RECIPIENT (or failed).
func runTracked(ctx context.Context, a *childArgs) result {
	res := result{N: a.n, Senders: 1, SM: true}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	to, err := jid.Parse(a.to)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	m := newMilestones(a.n)
	cfg := xmpptrack.Config{NoCarbons: a.noCarbons}
	cfg.StreamManagement.Window = a.window
	var trackers []*tracking.MessageTracker
	var sent atomic.Int64 // trackers[:sent] are filled
	if a.observe == observePoll {
		trackers = make([]*tracking.MessageTracker, a.n)
	} else {
		cfg.OnStateChange = m.change
	}
	if trackers != nil && a.goroutines > 1 {
		res.Error = "-observe poll reads the trackers in order: it needs one goroutine sending"
		return res
	}
	k := max(a.instances, 1)
	if k > len(a.jids) {
		res.Error = fmt.Sprintf("-instances %d needs as many accounts in -jid", k)
		return res
	}
	res.Senders = k
	var dsn, dir string
	dbPID := 0
	var pg *testserver.Postgres
	floor, onPostgres := postgresStore(a.store)
	if onPostgres {
		// One PostgreSQL for all instances, as for services sharing it.
		pg, err = testserver.LaunchPostgres(ctx, testserver.PostgresOptions{})
		if err != nil {
			res.Error = err.Error()
			return res
		}
		defer pg.Stop()
		dbPID = pg.PID()
		if dsn, err = pg.CreateDatabase(ctx, "bench"); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	if a.store == storeSQLite || a.store == storeSQLiteFloor || a.store == storeDiscard {
		if dir, err = os.MkdirTemp("", "xmpptrack-bench-"); err != nil {
			res.Error = err.Error()
			return res
		}
		defer os.RemoveAll(dir)
	}
	clients := make([]*xmpptrack.Client, k)
	var stores []*postgres.Store
	var lites []any // the SQLite stores, real or floor (see liteStats)
	for i := range k {
		cfg := cfg
		switch {
		case onPostgres:
			st, err := postgres.OpenConfig(ctx, dsn, postgres.Config{NoSync: a.store == storePostgresNoSync})
			if err != nil {
				res.Error = err.Error()
				return res
			}
			defer st.Close()
			if err := installFloor(ctx, pg, floor, i); err != nil {
				res.Error = err.Error()
				return res
			}
			stores = append(stores, st)
			cfg.Store = st
		case a.store == storeSQLite, a.store == storeSQLiteFloor, a.store == storeDiscard:
			// A file per instance: an SQLite file has one writer process.
			st, err := openLite(ctx, a.store, filepath.Join(dir, fmt.Sprintf("bench%d.db", i)))
			if err != nil {
				res.Error = err.Error()
				return res
			}
			defer st.Close()
			lites = append(lites, st)
			cfg.Store = st
		}
		one := *a
		one.jids, one.passwords = a.jids[i:i+1], a.passwords[i:i+1]
		if k > 1 && onPostgres && !strings.Contains(one.jids[0], "/") {
			// Instances sharing a store: a resource each (an instance is
			// an account and a resource; a store's slot for a resource
			// belongs to one account).
			one.jids = []string{fmt.Sprintf("%s/instance%d", one.jids[0], i)}
		}
		c, err := dialTracked(ctx, &one, cfg)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		defer c.Close()
		clients[i] = c
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()

	var stats0 map[string]float64
	if pg != nil {
		if stats0, err = dbStats(ctx, pg, "bench"); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	lite0 := liteStats(lites)
	stopProfile := profile(a.cpuprofile)
	// Each of these scans all of /proc (about 10 ms with a few hundred
	// processes on the machine): before cpu0, or the sender's CPU per
	// message would count them (0.004 ms at 5,000 messages).
	db0 := treeCPU(dbPID)
	watch0 := watchedCPU(a.watch)
	cpu0 := cpuNow()
	busy0, _ := cpuTicks()
	reads0, writes0 := procio.Syscalls("self")
	t0 := time.Now()
	m.t0.Store(t0.UnixNano())
	if trackers != nil {
		go m.poll(pollCtx, trackers, &sent)
	}
	var keep func(int, *tracking.MessageTracker)
	if trackers != nil {
		keep = func(i int, t *tracking.MessageTracker) {
			trackers[i] = t
			sent.Store(int64(i + 1))
		}
	}
	out := sendAll(ctx, clients, to, a.n, a.sendPattern(k), keep)
	if out.err != nil {
		res.Error = out.err.Error()
	}
	fillLatency(&res, out.latencies)
	res.Written = seconds(time.Since(t0))
	cpu := cpuNow()
	if res.Error == "" {
		cpu = waitQuiet(ctx, m.done, m.progress)
		if busy1, _ := cpuTicks(); busy1 > busy0 {
			res.Busy = float64(busy1-busy0) / clockTicks / time.Since(t0).Seconds()
		}
		reads1, writes1 := procio.Syscalls("self")
		res.SysReads, res.SysWrites = reads1-reads0, writes1-writes0
		if len(lites) > 0 {
			res.DBStats = map[string]float64{}
			for k, v := range liteStats(lites) {
				res.DBStats[k] = v - lite0[k]
			}
		}
	}
	res.CPU = seconds(cpu - cpu0)
	if dbPID > 0 {
		res.DBCPU = treeCPU(dbPID) - db0
	}
	res.WatchCPU = watchedSince(a.watch, watch0)
	stopProfile()
	stopPoll()
	m.fill(&res)
	if pg != nil && res.Error == "" {
		// The backends report their counters when they end.
		for i := range k {
			clients[i].Close()
			stores[i].Close()
		}
		stats, err := dbStats(ctx, pg, "bench")
		if err == nil {
			res.DBStats = map[string]float64{}
			for k, v := range stats {
				res.DBStats[k] = v - stats0[k]
			}
		}
	}
	if !res.Complete && res.Error == "" {
		res.Error = fmt.Sprintf("incomplete: %d to server, %d to recipient, %d seen, %d failed of %d",
			res.CntServer, res.CntRecip, res.CntSeen, res.Failed, res.N)
	}
	return res
}

// openLite opens the SQLite store of kind (storeSQLite, storeSQLiteFloor
// or storeDiscard) at path.
func openLite(ctx context.Context, kind, path string) (store.Store, error) {
	if kind == storeSQLite {
		return sqlite.Open(ctx, path)
	}
	return sqlitefloor.Open(ctx, path, sqlitefloor.Config{Discard: kind == storeDiscard})
}

// installFloor installs floor k (none if empty) in the bench database,
// once (before the first instance's first commit).
func installFloor(ctx context.Context, pg *testserver.Postgres, k pgfloor.Kind, instance int) error {
	if k == "" || instance > 0 {
		return nil
	}
	sql, err := pgfloor.Install(k)
	if err != nil {
		return err
	}
	_, err = pg.SQL(ctx, "bench", sql)
	return err
}

// instancesPattern is the send pattern of k instances: each instance has
// as many goroutines calling Send as one instance has (k instances are k
// copies of the one-instance service, sharing the messages; with the
// goroutines shared instead, each instance's group commits would be 1/k
// as large). The rate, if any, is over all of them.
func instancesPattern(goroutines, k int, rate float64) sendPattern {
	return sendPattern{goroutines: goroutines * max(k, 1), rate: rate}
}

// sendPattern is the child's pattern over its k instances (-goroutines,
// -rate, -ownids).
func (a *childArgs) sendPattern(k int) sendPattern {
	p := instancesPattern(a.goroutines, k, a.rate)
	p.ownIDs = a.ownIDs
	return p
}
