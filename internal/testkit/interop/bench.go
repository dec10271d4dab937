package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// BenchOptions configure RunAioxmppBench. Addr, JID, Password and To are
// required.
type BenchOptions struct {
	// Addr, JID, Password and CertPEM are the sender's connection, as in
	// Options.
	Addr     string
	JID      string
	Password string
	CertPEM  []byte

	// To is the responder's JID. Use its full JID (Peer.JID):
	// DeliveryReceiptsService of aioxmpp 0.13 matches a receipt's "from"
	// against the message's "to", so receipts for messages sent to a bare
	// JID are never matched.
	To string

	// Count is the number of messages. Zero means 100.
	Count int
	// BodySize is the approximate body length in bytes. Zero means 32.
	BodySize int
	// NoMarkers ends the run once every message is DELIVERED_TO_RECIPIENT
	// (for responders started with a negative MarkDelay).
	NoMarkers bool

	// Timeout bounds log-in, and then again the workload. Zero means 120 s.
	Timeout time.Duration
}

// BenchResult is what one run measured. Durations run from the first send;
// a milestone's duration is zero unless every message reached it.
type BenchResult struct {
	Implementation string // "aioxmpp 0.13.3"
	Python         string
	Count          int
	// Complete is true if every message was seen (or delivered, with
	// NoMarkers) and none failed.
	Complete bool
	// SM reports whether stream management was on (it drives
	// DELIVERED_TO_SERVER; without it aioxmpp reports a message delivered to
	// the server once written).
	SM bool

	// Time until every message was DELIVERED_TO_SERVER,
	// DELIVERED_TO_RECIPIENT and SEEN_BY_RECIPIENT (or a later state).
	ToServer, ToRecipient, Seen Milestone

	Failed       int      // messages that ended in ERROR or ABORTED
	FailedStates []string // their states
	// MarkersUnmatched counts <displayed/> markers for unknown ids.
	MarkersUnmatched int

	Wall time.Duration // first send to end of the workload
	// CPU is the Python process's user+system time during the workload;
	// CPUTotal includes start-up and log-in.
	CPU, CPUTotal time.Duration
	// PeakRSS is the Python process's peak resident set, in bytes.
	PeakRSS int64

	// Error is the benchmark's own error text, if any (e.g. a timeout).
	Error string
}

// Milestone is the progress of every message towards one state.
type Milestone struct {
	All        time.Duration // until the last message got there; 0 if not all did
	Count      int           // messages that got there
	P50, P99   time.Duration // per-message latency from its send
	Incomplete bool          // Count < BenchResult.Count
}

// RunAioxmppBench runs the aioxmpp sender benchmark once against a running
// responder and returns its result. Cancelling ctx stops the Python process
// (SIGTERM, then SIGKILL); the partial result is returned with an error.
func RunAioxmppBench(ctx context.Context, opts BenchOptions) (BenchResult, error) {
	host, port, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return BenchResult{}, fmt.Errorf("interop: BenchOptions.Addr %q: %w", opts.Addr, err)
	}
	if opts.JID == "" || opts.Password == "" || opts.To == "" {
		return BenchResult{}, errors.New("interop: BenchOptions.JID, Password and To are required")
	}
	if err := Available(Aioxmpp); err != nil {
		return BenchResult{}, err
	}
	count := opts.Count
	if count <= 0 {
		count = 100
	}
	size := opts.BodySize
	if size <= 0 {
		size = 32
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 120 * time.Second
	}
	dir, err := writeScripts()
	if err != nil {
		return BenchResult{}, err
	}
	defer os.RemoveAll(dir)
	args := []string{
		filepath.Join(dir, "aio_bench.py"),
		"--jid", opts.JID, "--host", host, "--port", port, "--to", opts.To,
		"--count", strconv.Itoa(count), "--body-size", strconv.Itoa(size),
		"--timeout", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64),
	}
	if opts.NoMarkers {
		args = append(args, "--no-markers")
	}
	if opts.CertPEM != nil {
		ca := filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(ca, opts.CertPEM, 0o600); err != nil {
			return BenchResult{}, fmt.Errorf("interop: %w", err)
		}
		args = append(args, "--cafile", ca)
	}
	cmd := exec.CommandContext(ctx, Python, args...)
	cmd.Dir = dir
	cmd.Env = pythonEnv([]string{"XT_PASSWORD=" + opts.Password})
	newGroup(cmd)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	var stdout bytes.Buffer
	stderr := &tail{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	// Standard input stays an open pipe until Wait returns: the script
	// stops when it closes.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return BenchResult{}, fmt.Errorf("interop: %w", err)
	}
	defer stdin.Close()
	runErr := cmd.Run()

	var res BenchResult
	found := false
	var loginErr string
	for line := range bytes.Lines(stdout.Bytes()) {
		line = bytes.TrimSpace(line)
		ev, err := ParseEvent(line)
		if err != nil {
			continue
		}
		switch ev.Kind {
		case EventError:
			loginErr = ev.Error
		case EventResult:
			if res, err = decodeBenchResult(line); err != nil {
				return res, err
			}
			found = true
		}
	}
	logs := func() string {
		return fmt.Sprintf("\n--- aioxmpp bench stderr ---\n%s\n--- stdout ---\n%s", stderr.bytes(), stdout.Bytes())
	}
	switch {
	case !found && loginErr != "":
		return res, fmt.Errorf("interop: aioxmpp bench: %s%s", loginErr, logs())
	case !found:
		return res, fmt.Errorf("interop: aioxmpp bench: no result (%v)%s", exitStatus(runErr), logs())
	case ctx.Err() != nil:
		return res, fmt.Errorf("interop: aioxmpp bench: %w", context.Cause(ctx))
	case !res.Complete:
		return res, fmt.Errorf("interop: aioxmpp bench incomplete: %s (to server %d, to recipient %d, seen %d of %d; %d failed)",
			res.Error, res.ToServer.Count, res.ToRecipient.Count, res.Seen.Count, res.Count, res.Failed)
	}
	return res, nil
}

// decodeBenchResult converts the script's result line.
func decodeBenchResult(line []byte) (BenchResult, error) {
	var r struct {
		Implementation   string   `json:"implementation"`
		Python           string   `json:"python"`
		Count            int      `json:"count"`
		Complete         bool     `json:"complete"`
		SM               *bool    `json:"sm"`
		ToServerCount    int      `json:"to_server_count"`
		ToServer         *float64 `json:"to_server_s"`
		ToServerP50      *float64 `json:"to_server_latency_p50_s"`
		ToServerP99      *float64 `json:"to_server_latency_p99_s"`
		ToRecipientCount int      `json:"to_recipient_count"`
		ToRecipient      *float64 `json:"to_recipient_s"`
		ToRecipientP50   *float64 `json:"to_recipient_latency_p50_s"`
		ToRecipientP99   *float64 `json:"to_recipient_latency_p99_s"`
		SeenCount        int      `json:"seen_count"`
		Seen             *float64 `json:"seen_s"`
		SeenP50          *float64 `json:"seen_latency_p50_s"`
		SeenP99          *float64 `json:"seen_latency_p99_s"`
		Failed           int      `json:"failed_count"`
		FailedStates     []string `json:"failed_states"`
		MarkersUnmatched int      `json:"markers_unmatched"`
		Wall             *float64 `json:"wall_s"`
		CPU              *float64 `json:"cpu_s"`
		CPUTotal         *float64 `json:"cpu_total_s"`
		PeakRSS          int64    `json:"peak_rss_bytes"`
		Error            string   `json:"error"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return BenchResult{}, fmt.Errorf("interop: aioxmpp bench result: %w", err)
	}
	ms := func(all, p50, p99 *float64, n int) Milestone {
		return Milestone{All: seconds(all), Count: n, P50: seconds(p50), P99: seconds(p99), Incomplete: n < r.Count}
	}
	return BenchResult{
		Implementation:   r.Implementation,
		Python:           r.Python,
		Count:            r.Count,
		Complete:         r.Complete,
		SM:               r.SM != nil && *r.SM,
		ToServer:         ms(r.ToServer, r.ToServerP50, r.ToServerP99, r.ToServerCount),
		ToRecipient:      ms(r.ToRecipient, r.ToRecipientP50, r.ToRecipientP99, r.ToRecipientCount),
		Seen:             ms(r.Seen, r.SeenP50, r.SeenP99, r.SeenCount),
		Failed:           r.Failed,
		FailedStates:     r.FailedStates,
		MarkersUnmatched: r.MarkersUnmatched,
		Wall:             seconds(r.Wall),
		CPU:              seconds(r.CPU),
		CPUTotal:         seconds(r.CPUTotal),
		PeakRSS:          r.PeakRSS,
		Error:            r.Error,
	}, nil
}

// seconds converts a JSON number of seconds (nil: absent) to a Duration.
func seconds(s *float64) time.Duration {
	if s == nil || *s < 0 {
		return 0
	}
	return time.Duration(*s * float64(time.Second))
}
