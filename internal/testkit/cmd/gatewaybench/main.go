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
// The recipient is logged in (an xmpptrack client that sends no receipts),
// so messages stay pending for their window. Rounds alternate direct and
// gateway to spread the noise of a shared machine. Each round also reports
// the CPU time per message of this process and of the XMPP server's process
// tree: on a loaded machine the throughputs swing with the other processes,
// the CPU times much less.
//
// The HTTP clients run in this process, so their CPU time counts against the
// gateway. By default they are minimal keep-alive clients (one write and one
// read per request, as load generators such as wrk do); -client net/http
// uses net/http's client instead, which costs about as much per request as
// the gateway's HTTP server.
//
//	go run ./internal/testkit/cmd/gatewaybench [-server ejabberd] [-n 20000] [-c 1000] [-pending 100000] [-rounds 2] [-store memory|sqlite] [-client raw|net/http] [-cpuprofile f] [-memprofile f]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/gateway"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const token = "bench-token"

var cpuProfile, memProfile string

func main() {
	server := flag.String("server", "ejabberd", "prosody or ejabberd")
	n := flag.Int("n", 20000, "messages per throughput run")
	c := flag.Int("c", 1000, "concurrent senders (goroutines, HTTP clients)")
	pending := flag.Int("pending", 100000, "pending messages for the memory measurement (0: skip)")
	rounds := flag.Int("rounds", 2, "direct/gateway rounds")
	storeKind := flag.String("store", "memory", "the gateway's record: memory or sqlite")
	client := flag.String("client", "raw", "the HTTP client: raw (a minimal keep-alive client, as load generators use) or net/http")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the gateway runs to `file`")
	flag.StringVar(&memProfile, "memprofile", "", "write a heap profile taken with the pending messages held to `file`")
	flag.Parse()
	if err := run(testserver.Kind(*server), *n, *c, *pending, *rounds, *storeKind, *client); err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		os.Exit(1)
	}
}

// counter counts messages that reached DELIVERED_TO_SERVER (or beyond).
type counter struct {
	n    atomic.Int64
	want atomic.Int64
	done chan struct{}
	once *sync.Once
}

func (c *counter) reset(want int) {
	c.n.Store(0)
	c.want.Store(int64(want))
	c.done = make(chan struct{})
	c.once = new(sync.Once)
}

func (c *counter) onChange(_ *tracking.MessageTracker, from, to tracking.MessageState, _ *tracking.Response) {
	if from == tracking.InTransit && to != tracking.InTransit {
		if c.n.Add(1) == c.want.Load() {
			c.once.Do(func() { close(c.done) })
		}
	}
}

func dial(ctx context.Context, srv *testserver.Server, local string, onChange func(*tracking.MessageTracker, tracking.MessageState, tracking.MessageState, *tracking.Response)) (*xmpptrack.Client, error) {
	return xmpptrack.Dial(ctx, srv.JID(local), srv.Password(local), &xmpptrack.Config{
		Addr: srv.Addr(), TLSConfig: srv.TLSConfig(), MaxPending: -1, Window: time.Hour,
		OnStateChange: onChange, NoReceipts: true,
	})
}

func run(kind testserver.Kind, n, conc, pending, rounds int, storeKind, client string) error {
	ctx := context.Background()
	srv, err := testserver.Launch(ctx, kind, testserver.Options{Accounts: []string{"direct", "gw", "bob"}, NoMAM: true})
	if err != nil {
		return err
	}
	defer srv.Stop()
	bob, err := dial(ctx, srv, "bob", nil)
	if err != nil {
		return err
	}
	defer bob.Close()
	to := srv.JID("bob")

	var dc counter
	dc.reset(0)
	direct, err := dial(ctx, srv, "direct", dc.onChange)
	if err != nil {
		return err
	}
	defer direct.Close()

	var rec store.Store
	if storeKind == "sqlite" {
		dir, err := os.MkdirTemp("", "gatewaybench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		st, err := sqlite.Open(ctx, filepath.Join(dir, "gw.db"))
		if err != nil {
			return err
		}
		defer st.Close()
		rec = st
	}
	g, err := gateway.New(gateway.Config{Tokens: []string{token}, RateLimit: -1, Store: rec,
		MaxMessages: 2 * (pending + rounds*n), MaxEvents: 4 * (pending + rounds*n)})
	if err != nil {
		return err
	}
	defer g.Close()
	var gc counter
	gc.reset(0)
	gwc, err := dial(ctx, srv, "gw", func(t *tracking.MessageTracker, from, to tracking.MessageState, r *tracking.Response) {
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: g}
	go hs.Serve(ln)
	defer hs.Close()
	body := []byte(`{"to":"` + to.String() + `","body":"benchmark message"}`)
	var post poster
	switch client {
	case "raw":
		p, closeAll, err := rawPoster(ln.Addr().String(), conc, body)
		if err != nil {
			return err
		}
		defer closeAll()
		post = p
	case "net/http":
		// Keep-alive with a connection per concurrent request, reused
		// across rounds.
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
		post = netHTTPPoster(hc, "http://"+ln.Addr().String()+"/v1/messages", body)
	default:
		return fmt.Errorf("unknown -client %q", client)
	}

	fmt.Printf("gatewaybench: %s, %d messages per run, %d concurrent, record %s, client %s, %d CPUs, %s\n",
		kind, n, conc, storeKind, client, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	var directRates, gwRates []float64
	var directCPU, gwCPU cpuUse
	var lat []time.Duration
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	pid := srv.PID()
	for r := range rounds {
		dc.reset(n)
		c0 := cpuNow(pid)
		d, err := runDirect(ctx, direct, to.String(), n, conc, &dc)
		if err != nil {
			return err
		}
		c1 := cpuNow(pid)
		gc.reset(n)
		gd, l, err := runGateway(post, n, conc, &gc)
		if err != nil {
			return err
		}
		c2 := cpuNow(pid)
		dcpu, gcpu := c1.sub(c0), c2.sub(c1)
		directCPU, gwCPU = directCPU.add(dcpu), gwCPU.add(gcpu)
		lat = append(lat, l...)
		directRates = append(directRates, float64(n)/d.Seconds())
		gwRates = append(gwRates, float64(n)/gd.Seconds())
		fmt.Printf("round %d: direct %.0f msg/s, gateway %.0f msg/s, ratio %.2f; CPU per message: direct %s (server %s), gateway %s (server %s)\n", r+1,
			directRates[r], gwRates[r], gwRates[r]/directRates[r],
			perMsg(dcpu.self, n), perMsg(dcpu.server, n), perMsg(gcpu.self, n), perMsg(gcpu.server, n))
	}
	dsum, gsum := 0.0, 0.0
	for i := range directRates {
		dsum += directRates[i]
		gsum += gwRates[i]
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("throughput to DELIVERED_TO_SERVER: direct %.0f msg/s, gateway %.0f msg/s, ratio %.2f\n",
		dsum/float64(rounds), gsum/float64(rounds), gsum/dsum)
	fmt.Printf("CPU per message: direct %s in this process + %s in the server, gateway %s + %s (this process runs the HTTP clients too)\n",
		perMsg(directCPU.self, rounds*n), perMsg(directCPU.server, rounds*n), perMsg(gwCPU.self, rounds*n), perMsg(gwCPU.server, rounds*n))
	fmt.Printf("POST /v1/messages latency: p50 %s, p90 %s, p99 %s, max %s (%d requests)\n",
		pct(.5).Round(10*time.Microsecond), pct(.9).Round(10*time.Microsecond), pct(.99).Round(10*time.Microsecond),
		lat[len(lat)-1].Round(10*time.Microsecond), len(lat))

	if pending > 0 {
		before := heap()
		gc.reset(pending)
		if _, _, err := runGateway(post, pending, conc, &gc); err != nil {
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

// poster sends POST /v1/messages as worker w and returns the status and
// body of the response.
type poster func(w int) (int, []byte, error)

// netHTTPPoster posts with net/http's client.
func netHTTPPoster(hc *http.Client, url string, body []byte) poster {
	return func(int) (int, []byte, error) {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, b, err
	}
}

// rawPoster posts on conc connections of its own, one per worker, opened
// before the first round.
func rawPoster(addr string, conc int, body []byte) (poster, func(), error) {
	conns := make([]*rawConn, conc)
	bufs := make([][]byte, conc)
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	for i := range conns {
		c, err := dialRaw(addr, "/v1/messages", token, body)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns[i] = c
	}
	return func(w int) (int, []byte, error) {
		st, b, err := conns[w].post(bufs[w])
		bufs[w] = b
		return st, b, err
	}, closeAll, nil
}

// runGateway posts n messages from conc HTTP clients and waits until the
// server acknowledged every one; it returns the POST latencies.
func runGateway(post poster, n, conc int, cnt *counter) (time.Duration, []time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	lats := make([][]time.Duration, conc)
	errc := make(chan error, conc)
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				st, b, err := post(w)
				if err != nil {
					errc <- err
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
				if st != http.StatusAccepted {
					errc <- fmt.Errorf("POST: %d %s", st, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return 0, nil, err
	default:
	}
	if err := waitCount(cnt); err != nil {
		return 0, nil, err
	}
	d := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return d, all, nil
}

func waitCount(c *counter) error {
	select {
	case <-c.done:
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
