package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// Senders, in the order each round runs them (senderKinds says what each
// runs).
const (
	sXmpptrack   = "xmpptrack"
	sPolled      = "xmpptrack-poll"            // observing by polling instead of OnStateChange
	sNoCoalesce  = "xmpptrack-nocoalesce"      // with sm's coalescing during bursts off (internal/smhook.NoCoalesce)
	sSQLite      = "xmpptrack-sqlite"          // with Config.Store on an SQLite file
	sSQLiteFloor = "xmpptrack-sqlite-floor"    // with the floor instrument internal/testkit/sqlitefloor: the least durable work on SQLite
	sDiscard     = "xmpptrack-store-discard"   // with that instrument's Discard: the client's durable path, no database work
	sPostgres    = "xmpptrack-postgres"        // with Config.Store on a throwaway PostgreSQL
	sPostgres2   = "xmpptrack-postgres-x2"     // two clients (two accounts), each with its own store handle, on one PostgreSQL
	sPgRows      = "xmpptrack-postgres-floor"  // xmpptrack-postgres on pgfloor.Rows: the least durable work
	sPgTrip      = "xmpptrack-postgres-trip"   // xmpptrack-postgres on pgfloor.Trip: a round trip and a flush per group commit
	sPgNoSync    = "xmpptrack-postgres-nosync" // xmpptrack-postgres with postgres.Config.NoSync: commits not waiting for their flush
	sNoCarbons   = "xmpptrack-nocarbons"       // with Config.NoCarbons
	sOwnIDs      = "xmpptrack-id16"            // Send with ids of 16 characters (xmpptrack.NewID), as plain mellium's here
	sPlain       = "plain"
	sPlainSM     = "plain-sm"
	sAioxmpp     = "aioxmpp"
	sCeiling     = "ceiling"
	sCeilingSM   = "ceiling-sm"
)

// options are the parent's flags.
type options struct {
	servers        []testserver.Kind
	n              int
	rounds         int
	senders        []string
	ceilingSenders int
	warmup         bool
	latencySamples int
	rcountRuns     int
	pendingN       int
	tls            bool
	runTimeout     time.Duration
	profileDir     string
	markers        string
	noCarbons      bool
	window         int
	serverSyscalls bool
	offlineN       int
	offlineRounds  int
	offlineSenders []string
	send           sendPattern // how the xmpptrack senders call Send
}

func parseOptions(args []string, usage io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(usage)
	o := &options{}
	server := fs.String("server", "both", "server to run: prosody, ejabberd, both, or none (only -pending-n and -offline-n)")
	fs.IntVar(&o.n, "n", 5000, "messages per sender and run")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every sender once, in turn")
	quick := fs.Bool("quick", false, "smoke run: 1 round, no warm-up, 10 latency samples, 1 <r/> count run, 10,000 pending (flags given explicitly win)")
	senders := fs.String("senders", strings.Join(allSenders, ","), "senders to compare, comma-separated; also "+sPolled+
		" (xmpptrack observed by reading tracker states every 2 ms instead of through Config.OnStateChange) and "+sNoCoalesce+
		" (xmpptrack with sm's coalescing during bursts off, for a same-binary comparison) and "+sNoCarbons+
		" (xmpptrack with Config.NoCarbons) and "+sOwnIDs+
		" (xmpptrack sending with ids of 16 characters, as the plain senders', instead of the client's own 22) and "+sSQLite+
		" (xmpptrack with Config.Store on an SQLite file: write-ahead and every state change recorded) and "+sSQLiteFloor+
		" (the same with the floor instrument internal/testkit/sqlitefloor: only the least durable work the issue requires) and "+sDiscard+
		" (the same instrument writing nothing: the client's durable path alone) and "+sPostgres+
		" (the same on a PostgreSQL 15 that the run starts) and "+sPostgres2+
		" (two clients of two accounts on one PostgreSQL, each with -send-goroutines, sharing the -n messages: two instances of a service) and "+sPgRows+
		" and "+sPgTrip+" (floors: "+sPostgres+" on a database doing only the least durable work, or one round trip and an empty commit per group; see internal/testkit/pgfloor) and "+sPgNoSync+
		" (the real store with Config.NoSync: its commits do not wait for their flush) and "+oWindowPrefix+
		"N (xmpptrack with sm.Config.Window N, to compare windows in one run) and "+pacedPrefix+
		"N (xmpptrack paced at N msg/s whatever -send-rate says: what the other processes cost at a durable sender's pace)")
	fs.IntVar(&o.send.goroutines, "send-goroutines", 1, "xmpptrack senders: goroutines calling Send at once, sharing the messages (1: sequential); per instance for "+sPostgres2)
	fs.Float64Var(&o.send.rate, "send-rate", 0, "xmpptrack senders: messages per second over all goroutines, open loop, reporting Send latency p50/p99 (0: unpaced)")
	fs.IntVar(&o.ceilingSenders, "ceiling-senders", 4, "parallel plain sessions of the ceiling senders, sharing the -n messages")
	fs.BoolVar(&o.warmup, "warmup", true, "run every sender once with n/10 messages before the first round, unrecorded")
	fs.IntVar(&o.latencySamples, "latency-samples", 50, "lone messages (and pings) for the ack latency; 0 skips it")
	fs.IntVar(&o.rcountRuns, "rcount-runs", 3, "tracked runs through the counting relay, for <r/> per stanza; 0 skips them")
	fs.IntVar(&o.pendingN, "pending-n", 100_000, "messages pending to an offline account (Prosody with its archive on); 0 skips it")
	fs.BoolVar(&o.tls, "tls", false, "use STARTTLS for every sender and the responder (default: plaintext on loopback)")
	fs.DurationVar(&o.runTimeout, "run-timeout", 3*time.Minute, "limit of one sender run")
	fs.StringVar(&o.markers, "markers", markEach, "responder's displayed markers: each (every message, from its handler) or latest (the newest message of each peer every 2 ms; a marker covers every earlier message)")
	fs.BoolVar(&o.noCarbons, "nocarbons", false, "xmpptrack sender with Config.NoCarbons (default: carbons on, the library's default)")
	fs.BoolVar(&o.serverSyscalls, "server-syscalls", false, "count the server's system calls in each run with perf stat (tracepoints), per message; the tracepoints add a little to the server's CPU, and the counts cover the whole run, log-in and log-out included")
	fs.IntVar(&o.window, "window", 0, "xmpptrack sender's sm.Config.Window (0: the default, -1: no window)")
	fs.IntVar(&o.offlineN, "offline-n", 0, "messages to an offline account through Prosody with its archive on, from xmpptrack, xmpptrack without a window and plain mellium, alternating; 0 skips it")
	fs.IntVar(&o.offlineRounds, "offline-rounds", 1, "rounds of the -offline-n comparison (the senders' order changes every round; with two or three senders, 2 × their number of rounds run each first, and right after each other, equally often)")
	offSenders := fs.String("offline-senders", strings.Join(offlineSenders, ","), "senders of the -offline-n comparison (xmpptrack follows -window)")
	fs.StringVar(&o.profileDir, "profile", "", "directory for CPU profiles of the Go senders' workloads (one file per run)")
	fs.Usage = func() {
		fmt.Fprintf(usage, "Usage: go run ./internal/testkit/cmd/bench [flags]\n\nCompares tracked sending with plain mellium, aioxmpp and the server's ceiling\nagainst a Prosody or ejabberd it starts on loopback. Flags:\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		for name, v := range map[string]*int{"rounds": &o.rounds, "latency-samples": &o.latencySamples, "rcount-runs": &o.rcountRuns, "pending-n": &o.pendingN} {
			if !set[name] {
				*v = map[string]int{"rounds": 1, "latency-samples": 10, "rcount-runs": 1, "pending-n": 10_000}[name]
			}
		}
		if !set["warmup"] {
			o.warmup = false
		}
	}
	switch *server {
	case "both":
		o.servers = testserver.Kinds()
	case "none": // only the pending and offline measurements
	case string(testserver.Prosody), string(testserver.Ejabberd):
		o.servers = []testserver.Kind{testserver.Kind(*server)}
	default:
		return nil, fmt.Errorf("bench: -server %q: want prosody, ejabberd, both or none", *server)
	}
	for _, s := range strings.Split(*senders, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, ok := lookupSender(s); !ok {
			return nil, fmt.Errorf("bench: unknown sender %q (have %s, %sN for xmpptrack with a window of N, and %sN for xmpptrack paced at N msg/s)",
				s, strings.Join(append(allSenders, extraSenders...), ", "), oWindowPrefix, pacedPrefix)
		}
		o.senders = append(o.senders, s)
	}
	for _, s := range strings.Split(*offSenders, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, ok := offlineWindow(s, 0); !ok {
			return nil, fmt.Errorf("bench: unknown offline sender %q (have %s, and %sN for a window of N)", s, strings.Join(offlineSenders, ", "), oWindowPrefix)
		}
		o.offlineSenders = append(o.offlineSenders, s)
	}
	if o.markers != markEach && o.markers != markLatest {
		return nil, fmt.Errorf("bench: -markers %q: want %s or %s", o.markers, markEach, markLatest)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: -profile: %w", err)
		}
	}
	if o.n <= 0 || o.rounds <= 0 || o.ceilingSenders <= 0 || len(o.senders) == 0 || o.send.goroutines <= 0 || o.send.rate < 0 {
		return nil, errors.New("bench: -n, -rounds, -ceiling-senders, -send-goroutines and -senders must be positive, -send-rate not negative")
	}
	return o, nil
}

// rcountSenders are the senders of the <r/> count runs: xmpptrack, and
// xmpptrack-postgres when it runs (its waits for the group commits make
// its stream stop and go, which changes what stream management sends).
func (o *options) rcountSenders() []string {
	if slices.Contains(o.senders, sPostgres) {
		return []string{sXmpptrack, sPostgres}
	}
	return []string{sXmpptrack}
}

// runLabels are the labels of the runs of one sender: warm-up, rounds,
// and for the senders of rcountSenders the <r/> count runs.
func (o *options) runLabels(sender string) []string {
	var l []string
	if o.warmup {
		l = append(l, "w")
	}
	for r := 1; r <= o.rounds; r++ {
		l = append(l, strconv.Itoa(r))
	}
	if slices.Contains(o.rcountSenders(), sender) {
		for i := 1; i <= o.rcountRuns; i++ {
			l = append(l, "c"+strconv.Itoa(i))
		}
	}
	return l
}
