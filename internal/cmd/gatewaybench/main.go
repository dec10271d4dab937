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
// gateway to spread the noise of a shared machine.
//
//	go run ./internal/cmd/gatewaybench [-server ejabberd] [-n 20000] [-c 1000] [-pending 100000] [-rounds 2] [-store memory|sqlite]
package main

import (
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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/gateway"
	"github.com/xmpptrack/xmpptrack/internal/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const token = "bench-token"

var cpuProfile string

func main() {
	server := flag.String("server", "ejabberd", "prosody or ejabberd")
	n := flag.Int("n", 20000, "messages per throughput run")
	c := flag.Int("c", 1000, "concurrent senders (goroutines, HTTP clients)")
	pending := flag.Int("pending", 100000, "pending messages for the memory measurement (0: skip)")
	rounds := flag.Int("rounds", 2, "direct/gateway rounds")
	storeKind := flag.String("store", "memory", "the gateway's record: memory or sqlite")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the gateway runs to `file`")
	flag.Parse()
	if err := run(testserver.Kind(*server), *n, *c, *pending, *rounds, *storeKind); err != nil {
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

func run(kind testserver.Kind, n, conc, pending, rounds int, storeKind string) error {
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
	url := "http://" + ln.Addr().String() + "/v1/messages"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}

	fmt.Printf("gatewaybench: %s, %d messages per run, %d concurrent, record %s, %d CPUs, %s\n",
		kind, n, conc, storeKind, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	var directRates, gwRates []float64
	var lat []time.Duration
	for r := range rounds {
		dc.reset(n)
		d, err := runDirect(ctx, direct, to.String(), n, conc, &dc)
		if err != nil {
			return err
		}
		gc.reset(n)
		if cpuProfile != "" {
			f, err := os.Create(cpuProfile)
			if err != nil {
				return err
			}
			pprof.StartCPUProfile(f)
		}
		gd, l, err := runGateway(hc, url, to.String(), n, conc, &gc)
		if cpuProfile != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			return err
		}
		lat = append(lat, l...)
		directRates = append(directRates, float64(n)/d.Seconds())
		gwRates = append(gwRates, float64(n)/gd.Seconds())
		fmt.Printf("round %d: direct %.0f msg/s, gateway %.0f msg/s, ratio %.2f\n", r+1,
			directRates[r], gwRates[r], gwRates[r]/directRates[r])
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
	fmt.Printf("POST /v1/messages latency: p50 %s, p90 %s, p99 %s, max %s (%d requests)\n",
		pct(.5).Round(10*time.Microsecond), pct(.9).Round(10*time.Microsecond), pct(.99).Round(10*time.Microsecond),
		lat[len(lat)-1].Round(10*time.Microsecond), len(lat))

	if pending > 0 {
		before := heap()
		gc.reset(pending)
		if _, _, err := runGateway(hc, url, to.String(), pending, conc, &gc); err != nil {
			return err
		}
		after := heap()
		st := gwc.Stats()
		fmt.Printf("memory: %d pending messages (client: %d pending trackers) hold %.1f MiB of heap, %.0f bytes each (gateway record, live trackers, client)\n",
			pending, st.Pending, float64(after-before)/(1<<20), float64(after-before)/float64(pending))
	}
	return nil
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

// runGateway posts n messages from conc HTTP clients and waits until the
// server acknowledged every one; it returns the POST latencies.
func runGateway(hc *http.Client, url, to string, n, conc int, cnt *counter) (time.Duration, []time.Duration, error) {
	body := `{"to":"` + to + `","body":"benchmark message"}`
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
				req, _ := http.NewRequest("POST", url, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					errc <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lats[w] = append(lats[w], time.Since(t0))
				if resp.StatusCode != http.StatusAccepted {
					errc <- fmt.Errorf("POST: %d %s", resp.StatusCode, b)
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
