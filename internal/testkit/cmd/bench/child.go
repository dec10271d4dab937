package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/smhook"
	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
)

// Roles of the child processes (the -role flag).
const (
	roleResponder = "responder"
	roleTracked   = "xmpptrack"
	rolePlain     = "plain"   // -sm and -senders select the variants
	roleLatency   = "latency" // lone-message ack latency and ping round trip
	rolePending   = "pending" // memory of many pending trackers
	roleOffline   = "offline" // plain mellium to an offline account, timed by an IQ ping
)

// passwordEnv carries the passwords of a child's accounts, comma-separated
// in the order of -jid (test passwords never contain commas).
const passwordEnv = "XT_BENCH_PASSWORDS"

// childArgs is what a child process is told on its command line.
type childArgs struct {
	role       string
	addr       string   // server host:port (or the counting relay)
	jids       []string // accounts to log in (several for the ceiling)
	passwords  []string
	to         string // the responder's full JID
	n          int    // messages per sender
	sm         bool   // plain: with stream management
	cafile     string // STARTTLS trusting only this certificate; "" = plaintext
	samples    int    // latency: lone messages
	gap        time.Duration
	timeout    time.Duration
	cpuprofile string
	markers    string  // responder: markEach or markLatest
	noCarbons  bool    // xmpptrack: Config.NoCarbons
	ownIDs     bool    // xmpptrack: Send with ids of 16 characters the sender makes (xmpptrack.NewID), as plain mellium's
	observe    string  // xmpptrack: observeHook or observePoll
	store      string  // xmpptrack: "", storeSQLite, storeSQLiteFloor, storeDiscard or storePostgres (or a floor or NoSync: see postgresStore)
	window     int     // xmpptrack, pending: StreamManagement.Window (0: default)
	goroutines int     // xmpptrack: goroutines calling Send
	rate       float64 // xmpptrack: messages per second, 0 = unpaced
	instances  int     // xmpptrack: clients (one per account of -jid), each with its own store handle
	watch      []int   // xmpptrack and plain senders: processes whose CPU during the workload is WatchCPU (the server, the responder)
}

func parseChildArgs(args []string) (*childArgs, error) {
	fs := flag.NewFlagSet("bench child", flag.ContinueOnError)
	a := &childArgs{}
	var jids string
	fs.StringVar(&a.role, "role", "", "")
	fs.StringVar(&a.addr, "addr", "", "")
	fs.StringVar(&jids, "jid", "", "")
	fs.StringVar(&a.to, "to", "", "")
	fs.IntVar(&a.n, "n", 0, "")
	fs.BoolVar(&a.sm, "sm", false, "")
	fs.StringVar(&a.cafile, "cafile", "", "")
	fs.IntVar(&a.samples, "samples", 50, "")
	fs.DurationVar(&a.gap, "gap", 60*time.Millisecond, "")
	fs.DurationVar(&a.timeout, "timeout", 3*time.Minute, "")
	fs.StringVar(&a.cpuprofile, "cpuprofile", "", "")
	fs.StringVar(&a.markers, "markers", markEach, "")
	fs.BoolVar(&a.noCarbons, "nocarbons", false, "")
	fs.BoolVar(&a.ownIDs, "ownids", false, "")
	noCoalesce := fs.Bool("nocoalesce", false, "")
	fs.StringVar(&a.observe, "observe", observeHook, "")
	fs.StringVar(&a.store, "store", "", "")
	fs.IntVar(&a.window, "window", 0, "")
	fs.IntVar(&a.goroutines, "goroutines", 1, "")
	fs.Float64Var(&a.rate, "rate", 0, "")
	fs.IntVar(&a.instances, "instances", 1, "")
	watch := fs.String("watch", "", "")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, f := range strings.FieldsFunc(*watch, func(r rune) bool { return r == ',' }) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("bench: -watch %q: %w", *watch, err)
		}
		a.watch = append(a.watch, pid)
	}
	if *noCoalesce {
		smhook.NoCoalesce.Store(true) // read by sm.New
	}
	a.jids = strings.Split(jids, ",")
	a.passwords = strings.Split(os.Getenv(passwordEnv), ",")
	if jids == "" || len(a.passwords) != len(a.jids) {
		return nil, errors.New("bench: child needs -jid and one password per account in " + passwordEnv)
	}
	return a, nil
}

// tlsConfig returns the STARTTLS configuration, nil for plaintext.
func (a *childArgs) tlsConfig() (*tls.Config, error) {
	if a.cafile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(a.cafile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("bench: no certificate in " + a.cafile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}, nil
}

// result is the JSON line a child prints last. Times are seconds from the
// first send; a milestone's time is 0 unless every message reached it.
type result struct {
	Event string `json:"event"` // "ready" or "result"
	Role  string `json:"role,omitempty"`
	JID   string `json:"jid,omitempty"` // ready: the full JID bound
	Error string `json:"error,omitempty"`

	N        int  `json:"n,omitempty"`       // messages, all senders together
	Senders  int  `json:"senders,omitempty"` // sessions sending in parallel
	SM       bool `json:"sm,omitempty"`
	Complete bool `json:"complete,omitempty"`

	ToServer    float64 `json:"to_server_s,omitempty"`
	ToRecipient float64 `json:"to_recipient_s,omitempty"`
	Seen        float64 `json:"seen_s,omitempty"`
	Written     float64 `json:"written_s,omitempty"`    // last message written
	LastRecip   float64 `json:"last_recip_s,omitempty"` // plain: latest receipt, complete or not
	CntServer   int     `json:"to_server,omitempty"`
	CntRecip    int     `json:"to_recipient,omitempty"`
	CntSeen     int     `json:"seen,omitempty"`
	Failed      int     `json:"failed,omitempty"`

	CPU float64 `json:"cpu_s,omitempty"` // user+system of the workload
	// DBCPU is the user+system of the database server the sender started
	// (PostgreSQL and its backends) during the workload.
	DBCPU float64 `json:"db_cpu_s,omitempty"`
	// WatchCPU is the user+system of each process of -watch with its
	// descendants (the XMPP server, the responder) during the workload:
	// with CPU and DBCPU, every process the run's messages cost.
	WatchCPU []float64 `json:"watch_cpu_s,omitempty"`
	// DBStats are the database's counters over the workload and the
	// stores' closing (see dbStatsQuery), or for SQLite senders the
	// stores' counters over the workload (see liteStats).
	DBStats map[string]float64 `json:"db_stats,omitempty"`
	// Busy is the cores of the whole machine busy during the workload
	// (every process's, from /proc/stat; xmpptrack senders): near the
	// number of CPUs, the run was bound by the CPUs, not by waits.
	Busy float64 `json:"busy_cores,omitempty"`
	// SysReads and SysWrites are the sender process's read-family and
	// write-family system calls during the workload (xmpptrack senders:
	// the XMPP stream's and the database's).
	SysReads  int64 `json:"sys_reads,omitempty"`
	SysWrites int64 `json:"sys_writes,omitempty"`

	// xmpptrack paced (-rate): seconds per Send call.
	SendP50 float64 `json:"send_p50_s,omitempty"`
	SendP99 float64 `json:"send_p99_s,omitempty"`
	SendMax float64 `json:"send_max_s,omitempty"`

	// Stream management elements and stanzas written (plain -sm, from the tee).
	RSent   int `json:"r_sent,omitempty"`
	Stanzas int `json:"stanzas,omitempty"`

	// latency: seconds per sample.
	AckLatency []float64 `json:"ack_latency_s,omitempty"`
	PingRTT    []float64 `json:"ping_rtt_s,omitempty"`

	// pending: memory before and after the trackers were pending.
	RSSBefore  int64 `json:"rss_before,omitempty"`
	RSSAfter   int64 `json:"rss_after,omitempty"`
	RSSFreed   int64 `json:"rss_freed,omitempty"` // after debug.FreeOSMemory
	HeapBefore int64 `json:"heap_before,omitempty"`
	HeapAfter  int64 `json:"heap_after,omitempty"`
	PeakHeap   int64 `json:"peak_heap,omitempty"`    // the most heap in use while sending (objects, runtime/metrics)
	PeakGoal   int64 `json:"peak_goal,omitempty"`    // the highest heap goal meanwhile
	PeakOwnRSS int64 `json:"peak_own_rss,omitempty"` // VmHWM once all were acknowledged, before Close
	FileBefore int64 `json:"file_before,omitempty"`  // RssFile (the program's pages read from its file) at RSSBefore
	FileAfter  int64 `json:"file_after,omitempty"`   // RssFile at RSSAfter
	Pending    int   `json:"pending,omitempty"`

	// responder
	Received int `json:"received,omitempty"`
	Dropped  int `json:"dropped,omitempty"`
}

// emit writes one JSON line on standard output.
func emit(r result) {
	b, _ := json.Marshal(r)
	os.Stdout.Write(append(b, '\n'))
}

// childMain runs one role and returns the exit code.
func childMain(args []string) int {
	a, err := parseChildArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var res result
	switch a.role {
	case roleResponder:
		res = runResponder(ctx, a)
	case roleTracked:
		res = runTracked(ctx, a)
	case rolePlain:
		res = runPlain(ctx, a)
	case roleLatency:
		res = runLatency(ctx, a)
	case rolePending:
		res = runPending(ctx, a)
	case roleOffline:
		res = runOffline(ctx, a)
	default:
		fmt.Fprintln(os.Stderr, "bench: unknown role "+strconv.Quote(a.role))
		return 2
	}
	res.Event, res.Role = "result", a.role
	emit(res)
	if res.Error != "" {
		return 1
	}
	return 0
}

// cpuNow returns the user+system CPU time of this process.
func cpuNow() time.Duration { return procio.SelfCPU() }

// rssNow returns this process's resident set in bytes (VmRSS).
func rssNow() int64 { return procio.SelfStatus("VmRSS:") }

// profile starts a CPU profile if a path was given; stop ends it.
func profile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// body returns the text of message i: about 32 bytes, like the aioxmpp
// script's.
func body(i int) string {
	return "bench xxxxxxxxxxxxxxxxxxxxxxxxxx " + strconv.Itoa(i)
}

// seconds converts a duration to float seconds.
func seconds(d time.Duration) float64 { return d.Seconds() }
