// Command gatewaybench measures the HTTP gateway against the library it is
// built on, in one run on one server (ejabberd by default):
//
//   - direct: n tracked messages sent with Client.Send from c goroutines,
//     timed until every one is DELIVERED_TO_SERVER;
//   - gateway: the same n messages as POST /v1/messages from c concurrent
//     HTTP clients on loopback, timed the same way; the ratio of the two
//     throughputs, and the POST latency percentiles;
//   - memory: the heap the gateway process holds for p pending messages
//     (accepted, acknowledged by the server, waiting for a receipt that never
//     comes), per message.
//
// Like is compared with like: with -store sqlite or postgres the direct
// client records in a store of the same kind (its own SQLite file, or its
// own database on the same PostgreSQL server) as the gateway, whose
// account's client records in the gateway's store; with -store memory
// neither records anything.
//
// The recipient is logged in (an xmpptrack client that sends no receipts,
// in a child process of its own: reading the messages is neither side's
// work), so messages stay pending for their window. Both sides send the
// same messages to it from the same number of concurrent senders (-c
// goroutines calling Send, or -c connections with one request in flight on
// each), with no pause between one message and the next. The library's
// sends run under context.Background, the gateway's under its shared
// SendTimeout deadline (a cost of the gateway's). The gateway is served
// with the timeouts examples/gateway sets.
//
// After an untimed warm-up of both, each round runs both sides, the library
// first in odd rounds and the gateway first in even ones (-order
// direct-first: always the library first), so that neither always runs on
// the machine the other just warmed. A side's run starts only once the
// recipient got every message of the run before (-settle=false: at once),
// so that the server's deliveries of one run do not slow the next; a
// message it never got, or one that failed, makes the run an error. Each
// round reports the CPU time per message over the timed run of this
// process (the library alone, or the gateway with its account's client),
// of the XMPP server's process tree, of PostgreSQL's, of the HTTP load
// client and of the recipient (the summary adds what they spent after it,
// until the recipient got everything): on a loaded machine the throughputs
// swing with the other processes and with the share of the cores the
// scheduler gives each side, the CPU times much less. The summary gives
// the ratio over all rounds, the median of the rounds' ratios, and the
// sender CPU ratio: the library's CPU per message against the gateway
// process's plus its load client's (the server's and the database's work
// is the same for both). The load average is printed with the numbers.
//
// The HTTP clients run in a child process (this program again), so that
// their CPU time is measured apart; it still competes for the same cores. On
// Linux they are by default minimal keep-alive connections with a pre-encoded
// request, served by one epoll loop (one write and one read per request, as
// load generators such as wrk do); -client raw (the default elsewhere) gives
// each connection a goroutine of its own (a failed read, a park and a wake-up
// more per request), and -client net/http uses net/http's client. With
// -pipeline D the epoll client keeps the -c requests in flight on -c/D
// connections, D at a time on each, written back to back before the first
// answer (HTTP/1.1 pipelining, as Node's undici does with its pipelining
// option); net/http's server answers a connection's requests one after the
// other, so only -c/D of them are in the gateway at once. With -network
// unix the gateway listens on a Unix socket instead of 127.0.0.1. With -keys
// every request has an Idempotency-Key of its own (the gateway then claims
// each key in its record: what a client that retries safely costs).
//
// With -floor, after the rounds, -rounds runs of n requests from a load
// client of their own measure the HTTP exchange alone: the same requests to
// a bare net/http handler (served with the same settings, in a child
// process of its own) that reads the body, holds the request until it is
// released at the gateway's throughput over the rounds, and answers as the
// gateway does. It prints their CPU per request, the gateway process's CPU
// beyond the library's against it, and the throughput ratio that the CPU
// allows a gateway that added only the HTTP exchange to the library's work.
//
// With -cpuprofile, one more gateway run of n messages follows the rounds,
// profiled alone, then one more direct run, profiled into the same name with
// ".direct" appended.
//
//	go run ./internal/testkit/cmd/gatewaybench [-server ejabberd] [-n 20000] [-c 1000] [-pending 100000] [-rounds 2] [-store memory|sqlite|postgres] [-client epoll|raw|net/http] [-pipeline 1] [-network tcp|unix] [-keys] [-order alternate|direct-first] [-settle=false] [-floor] [-cpuprofile f] [-memprofile f]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/gateway"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/postgres"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const token = "bench-token"

var (
	cpuProfile, memProfile string
	settleWait, floor      bool
	order                  string
)

func main() {
	server := flag.String("server", "ejabberd", "prosody or ejabberd")
	n := flag.Int("n", 20000, "messages per throughput run")
	c := flag.Int("c", 1000, "concurrent senders (goroutines, HTTP clients)")
	pending := flag.Int("pending", 100000, "pending messages for the memory measurement (0: skip)")
	rounds := flag.Int("rounds", 2, "direct/gateway rounds (even with -order alternate)")
	storeKind := flag.String("store", "memory", "the record: memory, sqlite or postgres (the direct client gets the same kind)")
	network := flag.String("network", "tcp", "how the load client reaches the gateway: tcp (127.0.0.1) or unix (a Unix socket; -client epoll)")
	keys := flag.Bool("keys", false, "give every request an Idempotency-Key of its own (-client epoll)")
	pipeline := flag.Int("pipeline", 1, "requests in flight per connection of -client epoll (HTTP/1.1 pipelining; -c/pipeline connections)")
	client := flag.String("client", defaultClient, "the HTTP client: epoll (one loop over all connections, as wrk sends; Linux), raw (a goroutine per connection) or net/http")
	loadAddr := flag.String("load-addr", "", "(internal) run as the HTTP load client of this address")
	recipientAddr := flag.String("recipient-addr", "", "(internal) run as the recipient, logging in at this address")
	recipientJID := flag.String("recipient-jid", "", "(internal) the recipient's JID")
	recipientCA := flag.String("recipient-ca", "", "(internal) the XMPP server's certificate (PEM file)")
	loadBody := flag.String("load-body", "", "(internal) the load client's request body")
	floorServer := flag.Bool("floor-server", false, "(internal) serve the floor's bare handler on the listener of file descriptor 3")
	floorRate := flag.Float64("floor-rate", 0, "(internal) the floor's releases per second")
	flag.BoolVar(&settleWait, "settle", true, "start each phase once the recipient got every message of the one before")
	flag.StringVar(&order, "order", "alternate", "alternate (direct first in odd rounds, the gateway first in even ones) or direct-first")
	flag.BoolVar(&floor, "floor", false, "after the rounds, measure the HTTP exchange alone: the same load against a bare net/http handler")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of one more gateway run to `file`")
	flag.StringVar(&memProfile, "memprofile", "", "write a heap profile taken with the pending messages held to `file`")
	flag.Parse()
	if order != "alternate" && order != "direct-first" {
		fmt.Fprintf(os.Stderr, "gatewaybench: unknown -order %q\n", order)
		os.Exit(2)
	}
	if *rounds < 1 || *n < 1 {
		fmt.Fprintln(os.Stderr, "gatewaybench: -rounds and -n must be at least 1")
		os.Exit(2)
	}
	if order == "alternate" && *rounds%2 != 0 && *loadAddr == "" && *recipientAddr == "" && !*floorServer {
		fmt.Fprintln(os.Stderr, "gatewaybench: -order alternate needs an even -rounds (each side first as often)")
		os.Exit(2)
	}
	var err error
	switch {
	case *loadAddr != "":
		err = loadMain(*loadAddr, *client, *c, *pipeline, *keys, []byte(*loadBody))
	case *floorServer:
		err = floorMain(*c, *floorRate)
	case *recipientAddr != "":
		err = recipientMain(*recipientAddr, *recipientJID, *recipientCA)
	default:
		err = run(testserver.Kind(*server), *n, *c, *pipeline, *pending, *rounds, *storeKind, *client, *network, *keys)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		os.Exit(1)
	}
}

// counter counts messages that left IN_TRANSIT: to DELIVERED_TO_SERVER or
// beyond, or failed (ABORTED, TIMED_OUT, CLOSED, ERROR).
type counter struct {
	n      atomic.Int64
	failed atomic.Int64
	want   atomic.Int64
	done   chan struct{}
	once   *sync.Once
}

func (c *counter) reset(want int) {
	c.n.Store(0)
	c.failed.Store(0)
	c.want.Store(int64(want))
	c.done = make(chan struct{})
	c.once = new(sync.Once)
}

func (c *counter) onChange(_ *tracking.MessageTracker, from, to tracking.MessageState, _ *tracking.Response) {
	if from != tracking.InTransit || to == tracking.InTransit {
		return
	}
	if to > tracking.SeenByRecipient {
		c.failed.Add(1)
	}
	if c.n.Add(1) == c.want.Load() {
		c.once.Do(func() { close(c.done) })
	}
}

func dial(ctx context.Context, srv *testserver.Server, local string, st store.Store, onChange func(*tracking.MessageTracker, tracking.MessageState, tracking.MessageState, *tracking.Response)) (*xmpptrack.Client, error) {
	addr := srv.JID(local)
	if st != nil {
		addr, _ = addr.WithResource("bench")
	}
	return xmpptrack.Dial(ctx, addr, srv.Password(local), &xmpptrack.Config{
		Addr: srv.Addr(), TLSConfig: srv.TLSConfig(), MaxPending: -1, Window: time.Hour,
		OnStateChange: onChange, NoReceipts: true, Store: st,
	})
}

// openStores opens the direct client's store and the gateway's, of one
// kind; dbPID is PostgreSQL's (0 for none).
func openStores(ctx context.Context, kind string) (direct, gw store.Store, dbPID int, cleanup func(), err error) {
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	switch kind {
	case "memory":
		return nil, nil, 0, cleanup, nil
	case "sqlite":
		dir, err := os.MkdirTemp("", "gatewaybench-")
		if err != nil {
			return nil, nil, 0, cleanup, err
		}
		undo = append(undo, func() { os.RemoveAll(dir) })
		for _, name := range []string{"direct.db", "gw.db"} {
			st, err := sqlite.Open(ctx, filepath.Join(dir, name))
			if err != nil {
				return nil, nil, 0, cleanup, err
			}
			undo = append(undo, func() { st.Close() })
			direct, gw = gw, st
		}
		return direct, gw, 0, cleanup, nil
	case "postgres":
		pg, err := testserver.LaunchPostgres(ctx, testserver.PostgresOptions{})
		if err != nil {
			return nil, nil, 0, cleanup, err
		}
		undo = append(undo, func() { pg.Stop() })
		for _, name := range []string{"direct", "gw"} {
			dsn, err := pg.CreateDatabase(ctx, name)
			if err != nil {
				return nil, nil, 0, cleanup, err
			}
			st, err := postgres.Open(ctx, dsn)
			if err != nil {
				return nil, nil, 0, cleanup, err
			}
			undo = append(undo, func() { st.Close() })
			direct, gw = gw, st
		}
		return direct, gw, pg.PID(), cleanup, nil
	}
	return nil, nil, 0, cleanup, fmt.Errorf("unknown -store %q", kind)
}

func run(kind testserver.Kind, n, conc, depth, pending, rounds int, storeKind, client, network string, keys bool) error {
	ctx := context.Background()
	srv, err := testserver.Launch(ctx, kind, testserver.Options{Accounts: []string{"direct", "gw", "bob"}, NoMAM: true})
	if err != nil {
		return err
	}
	defer srv.Stop()
	bob, err := startRecipient(srv, "bob")
	if err != nil {
		return err
	}
	defer bob.close()
	to := srv.JID("bob")

	dst, gst, dbPID, closeStores, err := openStores(ctx, storeKind)
	defer closeStores()
	if err != nil {
		return err
	}
	var dc counter
	dc.reset(0)
	direct, err := dial(ctx, srv, "direct", dst, dc.onChange)
	if err != nil {
		return err
	}
	defer direct.Close()

	g, err := gateway.New(gateway.Config{Tokens: []string{token}, RateLimit: -1, Store: gst,
		MaxMessages: 2 * (pending + rounds*n), MaxEvents: 4 * (pending + rounds*n)})
	if err != nil {
		return err
	}
	defer g.Close()
	var gc counter
	gc.reset(0)
	gwc, err := dial(ctx, srv, "gw", g.ClientStore(), func(t *tracking.MessageTracker, from, to tracking.MessageState, r *tracking.Response) {
		g.OnStateChange(t, from, to, r)
		gc.onChange(t, from, to, r)
	})
	if err != nil {
		return err
	}
	defer gwc.Close()
	if err := g.AddAccount(gateway.Account{JID: srv.JID("gw"), Client: gwc}); err != nil {
		return err
	}
	if network != "tcp" && client != "epoll" {
		return fmt.Errorf("-network %s needs -client epoll", network)
	}
	ln, err := listen(network)
	if err != nil {
		return err
	}
	defer ln.Close()
	hs := httpServer(g)
	go hs.Serve(ln)
	defer hs.Close()
	body := []byte(`{"to":"` + to.String() + `","body":"benchmark message"}`)
	load, err := startLoad(ln.Addr().String(), client, conc, depth, keys, body)
	if err != nil {
		return err
	}
	defer load.close()

	fmt.Printf("gatewaybench: %s, %d messages per run, %d concurrent, store %s (direct and gateway), client %s (%d connections over %s, Idempotency-Keys %v), %d CPUs, %s, %s\n",
		kind, n, conc, storeKind, client, conc/depth, network, keys, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339), loadavg())
	pids := pidSet{server: srv.PID(), db: dbPID, load: load.pid(), recipient: bob.pid()}
	// settle waits until the recipient got every message sent so far: the
	// server has finished the previous run's deliveries before the next run
	// starts. A message missing makes the measurement invalid.
	var sent int64
	settle := func(k int) func() error {
		return func() error {
			sent += int64(k)
			if !settleWait {
				return nil
			}
			ok, got, err := bob.wait(sent)
			if err == nil && !ok {
				err = fmt.Errorf("the recipient got %d of %d messages", got, sent)
			}
			return err
		}
	}
	viaLibrary := func(k int) func() (time.Duration, []time.Duration, error) {
		return func() (time.Duration, []time.Duration, error) {
			dc.reset(k)
			d, err := runDirect(ctx, direct, to.String(), k, conc, &dc)
			return d, nil, err
		}
	}
	viaGateway := func(k int) func() (time.Duration, []time.Duration, error) {
		return func() (time.Duration, []time.Duration, error) {
			gc.reset(k)
			return runGateway(load, k, &gc)
		}
	}
	// Warm up both paths (the server's first thousands of messages cost it
	// more), untimed.
	if w := min(n, 2000); w > 0 {
		for _, send := range []func() (time.Duration, []time.Duration, error){viaLibrary(w), viaGateway(w)} {
			if _, err := measure(pids, send, settle(w)); err != nil {
				return err
			}
		}
	}
	var rs []round
	for r := range rounds {
		rd := round{directFirst: directFirst(order, r)}
		sides := []struct {
			send func() (time.Duration, []time.Duration, error)
			p    *phase
		}{{viaLibrary(n), &rd.direct}, {viaGateway(n), &rd.gateway}}
		if !rd.directFirst {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, sd := range sides {
			var err error
			if *sd.p, err = measure(pids, sd.send, settle(n)); err != nil {
				return err
			}
		}
		rs = append(rs, rd)
		first := "direct first"
		if !rd.directFirst {
			first = "gateway first"
		}
		fmt.Printf("round %d (%s, %s): direct %.0f msg/s, gateway %.0f msg/s, ratio %.2f; CPU per message: direct %s, gateway %s\n", r+1, first, loadavg(),
			float64(n)/rd.direct.d.Seconds(), float64(n)/rd.gateway.d.Seconds(), rd.direct.d.Seconds()/rd.gateway.d.Seconds(),
			rd.direct.cpu.perMsg(n), rd.gateway.cpu.perMsg(n))
	}
	sum := summarize(n, rs)
	sum.print(n, rounds)
	if floor {
		if err := runFloor(network, client, conc, depth, n, rounds, sum.gatewayRate, body, sum); err != nil {
			return err
		}
	}

	if cpuProfile != "" {
		// One more run of each side, profiled alone (the recipient's wait
		// after the profile).
		for _, p := range []struct {
			name, file string
			send       func() (time.Duration, []time.Duration, error)
		}{{"gateway", cpuProfile, viaGateway(n)}, {"direct", cpuProfile + ".direct", viaLibrary(n)}} {
			f, err := os.Create(p.file)
			if err != nil {
				return err
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			pprof.StartCPUProfile(f)
			ph, err := measure(pids, p.send, func() error { return nil })
			pprof.StopCPUProfile()
			runtime.ReadMemStats(&m1)
			f.Close()
			if err == nil {
				err = settle(n)()
			}
			if err != nil {
				return err
			}
			fmt.Printf("profiled %s run (%s): CPU per message %s; this process allocated %d B in %d objects per message, %d garbage collections\n",
				p.name, p.file, ph.cpu.perMsg(n), (m1.TotalAlloc-m0.TotalAlloc)/uint64(n), (m1.Mallocs-m0.Mallocs)/uint64(n), m1.NumGC-m0.NumGC)
		}
	}
	if pending > 0 {
		before := heap()
		if _, err := measure(pids, viaGateway(pending), settle(pending)); err != nil {
			return err
		}
		after := heap()
		if memProfile != "" {
			f, err := os.Create(memProfile)
			if err != nil {
				return err
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		st := gwc.Stats()
		fmt.Printf("memory: %d pending messages (client: %d pending trackers) hold %.1f MiB of heap, %.0f bytes each (gateway record, live trackers, client)\n",
			pending, st.Pending, float64(after-before)/(1<<20), float64(after-before)/float64(pending))
	}
	return nil
}

// httpServer serves h as examples/gateway serves the gateway (its timeouts
// cost a deadline update per read and write).
func httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
}

// listen listens on 127.0.0.1 or, for network "unix", on a Unix socket in
// a temporary directory of its own (removed when the listener closes).
func listen(network string) (net.Listener, error) {
	switch network {
	case "tcp":
		return net.Listen("tcp", "127.0.0.1:0")
	case "unix":
		dir, err := os.MkdirTemp("", "gatewaybench-")
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("unix", filepath.Join(dir, "gateway.sock"))
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return dirListener{ln, dir}, nil
	}
	return nil, fmt.Errorf("unknown -network %q", network)
}

// dirListener removes its directory once closed.
type dirListener struct {
	net.Listener
	dir string
}

func (l dirListener) Close() error {
	err := l.Listener.Close()
	os.RemoveAll(l.dir)
	return err
}

func perMsg(d time.Duration, n int) time.Duration {
	return (d / time.Duration(n)).Round(time.Microsecond)
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// runDirect sends n messages with conc goroutines and waits until the
// server acknowledged every one.
func runDirect(ctx context.Context, c *xmpptrack.Client, to string, n, conc int, cnt *counter) (time.Duration, error) {
	j := mustJID(to)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, conc)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := c.Send(ctx, xmpptrack.Message{To: j, Body: "benchmark message"}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	if err := waitCount(cnt); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// runGateway has the load client post n messages and waits until the
// server acknowledged every one; it returns the POST latencies.
func runGateway(load *loadClient, n int, cnt *counter) (time.Duration, []time.Duration, error) {
	start := time.Now()
	lats, err := load.post(n)
	if err != nil {
		return 0, nil, err
	}
	if err := waitCount(cnt); err != nil {
		return 0, nil, err
	}
	return time.Since(start), lats, nil
}

// waitCount waits until every message left IN_TRANSIT; any that failed
// is an error.
func waitCount(c *counter) error {
	select {
	case <-c.done:
		if f := c.failed.Load(); f > 0 {
			return fmt.Errorf("%d of %d messages failed", f, c.want.Load())
		}
		return nil
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("only %d of %d messages acknowledged", c.n.Load(), c.want.Load())
	}
}

func mustJID(s string) jid.JID {
	j, err := jid.Parse(s)
	if err != nil {
		panic(err)
	}
	return j
}
