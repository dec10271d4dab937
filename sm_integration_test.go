package xmpptrack

// Stream management against real Prosody and ejabberd (issue 3): enabling,
// acknowledgements in both directions checked against the server's own
// count, and the latency of the ack of a lone message.

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// ackLog records every stanza the server acknowledged to a client, in
// order, with the time of the acknowledgement.
type ackLog struct {
	mu   sync.Mutex
	wake chan struct{}
	all  []sm.Stanza
	at   map[string]time.Time // message id -> ack time
}

func newAckLog() *ackLog {
	return &ackLog{wake: make(chan struct{}, 1), at: map[string]time.Time{}}
}

func (a *ackLog) onAcked(s sm.Stanza) {
	now := time.Now()
	a.mu.Lock()
	a.all = append(a.all, s)
	if s.Name == "message" {
		a.at[s.ID] = now
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// waitFor waits until cond, called under the lock, holds.
func (a *ackLog) waitFor(ctx context.Context, cond func() bool) error {
	for {
		a.mu.Lock()
		ok := cond()
		a.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-a.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func smIntegrationServer(t *testing.T, kind testserver.Kind, debug bool, accounts ...string) *testserver.Server {
	t.Helper()
	// ejabberd's MAM on Mnesia is the bottleneck (20-70 archived messages per second); Prosody
	// keeps its default (MAM on).
	return testserver.Start(t, kind, testserver.Options{Accounts: accounts, NoMAM: kind == testserver.Ejabberd, Debug: debug})
}

func smDial(t *testing.T, ctx context.Context, srv *testserver.Server, local string, cfg Config) *Client {
	t.Helper()
	cfg.Addr = srv.Addr()
	cfg.TLSConfig = srv.TLSConfig()
	return faultDial(t, ctx, srv, local, cfg)
}

// TestSMIntegrationServerCounts checks stream management against the
// server's own view of the counts:
//
//   - enable: the server grants resumption (<enabled resume='true' max/>);
//   - client to server: every stanza the client wrote is acknowledged
//     exactly once, in order, and the server's last h equals the client's
//     count;
//   - server to client: the recipient's acks agree with what the server
//     sent. Prosody logs its queue of unacknowledged stanzas ("#queue = N"
//     at debug level): it must drain to zero, and no session may end with
//     unacknowledged stanzas. For both servers, a disagreement would make
//     the server re-route the "unacknowledged" messages when the recipient
//     closes its stream (to offline storage, or back as errors), so the
//     recipient closes, comes back on a new session, and must find nothing
//     but the barrier message, while the sender sees no error. ejabberd
//     must never end the stream (its "Too many unacked stanzas" kill; the
//     test harness raises max_ack_queue to 100,000, Debian's default is
//     5,000, so the count of acks is what this checks, not that limit).
func TestSMIntegrationServerCounts(t *testing.T) {
	n := 500
	if testing.Short() {
		n = 100
	}
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := smIntegrationServer(t, kind, kind == testserver.Prosody, "alice", "bob")
			ctx, cancel := context.WithTimeout(t.Context(), faultWait)
			defer cancel()

			led := newFaultLedger()
			sender := srv.JID("alice").String()
			bob := smDial(t, ctx, srv, "bob", Config{Handler: led.recipientHandler(sender)})
			bob.Observe(Observer{Connected: led.bobConnected})
			acks := newAckLog()
			alice := smDial(t, ctx, srv, "alice", Config{
				Window:           -1,
				OnStateChange:    led.stateChanged,
				StreamManagement: sm.Config{OnAcked: acks.onAcked},
			})

			// Dial returns once <enable/> is written; <enabled/> precedes
			// the answer to a later IQ.
			s, err := alice.Session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := pingServer(ctx, s); err != nil {
				t.Fatalf("ping: %v", err)
			}
			info := alice.sm.Info()
			if !info.Enabled || !info.Resumable || info.Max <= 0 {
				t.Fatalf("after Dial: %+v, want stream management enabled, resumable, with a max", info)
			}
			t.Logf("%s: enabled, resumable, max %v", kind, info.Max)

			began := time.Now()
			var ids []string
			for i := range n {
				tr, err := alice.Send(ctx, Message{To: srv.JID("bob"), Body: fmt.Sprint("count ", i), NoReceipt: true, NoMarkable: true})
				if err != nil {
					t.Fatalf("Send %d: %v", i, err)
				}
				ids = append(ids, tr.ID())
			}
			err = acks.waitFor(ctx, func() bool { return len(acks.at) == n })
			if err == nil {
				err = led.wait(ctx, func() bool {
					for _, id := range ids {
						if led.received[id] == 0 {
							return false
						}
					}
					return true
				})
			}
			if err != nil {
				t.Fatalf("acks %d of %d, or not everything received: %v", len(acks.at), n, err)
			}
			took := time.Since(began)

			// Client to server: each stanza acknowledged once, in order, and
			// the server's h is the client's count.
			info = alice.sm.Info()
			acks.mu.Lock()
			for i, s := range acks.all {
				if s.Seq != uint32(i+1) {
					t.Errorf("ack %d is stanza number %d (%s %s), want %d", i, s.Seq, s.Name, s.ID, i+1)
					break
				}
			}
			if len(acks.all) != int(info.Sent) || info.Acked != info.Sent || info.Unacked != 0 {
				t.Errorf("%d stanzas acknowledged; stream management state %+v: want the server's h to equal the count sent", len(acks.all), info)
			}
			acks.mu.Unlock()

			// Server to client: the recipient leaves (a final <a/>, then
			// </stream:stream>), comes back on a new session, and must not
			// get anything again.
			bobInfo := bob.sm.Info()
			bob.Close()
			before := led.copies()
			bob2 := smDial(t, ctx, srv, "bob", Config{Handler: led.recipientHandler(sender)})
			s, err = bob2.Session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := pingServer(ctx, s); err != nil {
				t.Fatalf("ping: %v", err)
			}
			tr, err := alice.Send(ctx, Message{To: srv.JID("bob"), Body: "barrier", NoReceipt: true, NoMarkable: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := led.wait(ctx, func() bool { return led.received[tr.ID()] > 0 }); err != nil {
				t.Fatalf("the barrier did not arrive: %v", err)
			}
			if again := led.copies() - before - 1; again != 0 {
				t.Errorf("the recipient's new session got %d messages again: the server thought they were unacknowledged", again)
			}
			led.mu.Lock()
			for _, id := range ids {
				if led.received[id] != 1 || led.toServer[id] != 1 || led.errored[id] != 0 {
					t.Errorf("%s: %s, want received once, acknowledged once, no error", id, led.describe(id))
				}
			}
			if led.bobFresh+led.bobResumed != 0 {
				t.Errorf("the recipient reconnected %d times during the burst", led.bobFresh+led.bobResumed)
			}
			led.mu.Unlock()

			switch kind {
			case testserver.Prosody:
				// bob2 is still live, its <r/> for the barrier perhaps
				// unanswered: close it (a final <a/>) before reading the
				// queues.
				bob2.Close()
				checkProsodyQueues(t, srv, "bob")
			case testserver.Ejabberd:
				if logs := srv.Logs(); strings.Contains(logs, "Too many unacked stanzas") {
					t.Errorf("ejabberd killed a stream for too many unacked stanzas:\n%s", logs)
				}
			}
			t.Logf("%s: %d messages acked in order and received once in %v; sender sent %d stanzas, server acked h=%d; recipient handled %d stanzas, server's view agrees",
				kind, n, took.Round(time.Millisecond), info.Sent, info.Acked, bobInfo.Handled)
		})
	}
}

// copies counts every copy the recipient received.
func (l *faultLedger) copies() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.received {
		n += c
	}
	return n
}

// checkProsodyQueues reads Prosody's debug log. For each session of the
// account, the last "#queue = N" (logged by mod_smacks on every <a/> from
// the client) must be 0, and no session may be destroyed with
// unacknowledged stanzas or receive an ack for more than it sent.
func checkProsodyQueues(t *testing.T, srv *testserver.Server, local string) {
	t.Helper()
	f, err := os.Open(filepath.Join(srv.Dir(), "prosody.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sessions := map[string]bool{} // log tags of the account's sessions
	last := map[string]string{}   // tag -> last "#queue = …" line
	var bad []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), "\t", 3)
		if len(fields) != 3 {
			continue
		}
		head := strings.Fields(fields[0])
		if len(head) == 0 {
			continue
		}
		tag, msg := head[len(head)-1], fields[2]
		switch {
		case msg == "Authenticated as "+srv.JID(local).String():
			sessions[tag] = true
		case !sessions[tag]:
		case strings.HasPrefix(msg, "#queue = "):
			last[tag] = msg
		case strings.Contains(msg, "unacked stanzas") || strings.Contains(msg, "new stanzas, but we sent"):
			bad = append(bad, tag+": "+msg)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(sessions) == 0 {
		t.Fatalf("no session of %s in Prosody's log", local)
	}
	for tag := range sessions {
		if q, ok := last[tag]; ok && !strings.HasPrefix(q, "#queue = 0 ") {
			t.Errorf("Prosody session %s of %s: last %q, want an empty queue", tag, local, q)
		}
	}
	for _, b := range bad {
		t.Errorf("Prosody: %s", b)
	}
	for _, tag := range slices.Sorted(maps.Keys(last)) {
		t.Logf("Prosody session %s of %s: last %q", tag, local, last[tag])
	}
}

// TestLoneAckLatency measures the time from a lone Send to the server's
// acknowledgement of it, against the round trip of an XEP-0199 ping on the
// same connection (sm.Config documents the budget: AckDelay, 10 ms, plus
// one round trip; the project's budget is 50 ms plus one round trip).
// Each sample is a ping, then (once everything is acknowledged) one
// message and its ack. Every message must be acknowledged; the latencies
// are reported (-race slows the client: compare numbers from plain runs).
func TestLoneAckLatency(t *testing.T) {
	n := 50
	if testing.Short() {
		n = 20
	}
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := smIntegrationServer(t, kind, false, "alice", "bob")
			ctx, cancel := context.WithTimeout(t.Context(), faultWait)
			defer cancel()
			smDial(t, ctx, srv, "bob", Config{})
			acks := newAckLog()
			alice := smDial(t, ctx, srv, "alice", Config{StreamManagement: sm.Config{OnAcked: acks.onAcked}})
			quiet := func() {
				t.Helper()
				if err := acks.waitFor(ctx, func() bool { return alice.sm.Info().Unacked == 0 }); err != nil {
					t.Fatalf("acks did not settle: %v", err)
				}
			}
			var rtt, lat []time.Duration
			for i := -1; i < n; i++ { // sample -1 warms up
				s, err := alice.Session(ctx)
				if err != nil {
					t.Fatal(err)
				}
				quiet()
				start := time.Now()
				if err := pingServer(ctx, s); err != nil {
					t.Fatalf("ping: %v", err)
				}
				ping := time.Since(start)
				quiet()
				start = time.Now()
				tr, err := alice.Send(ctx, Message{To: srv.JID("bob"), Body: "lone", NoReceipt: true, NoMarkable: true})
				if err != nil {
					t.Fatal(err)
				}
				var at time.Time
				err = acks.waitFor(ctx, func() bool {
					at = acks.at[tr.ID()]
					return !at.IsZero()
				})
				if err != nil {
					t.Fatalf("no ack for the lone message: %v", err)
				}
				if st := tr.State(); st != tracking.DeliveredToServer {
					t.Errorf("tracker in %v after the ack", st)
				}
				if i >= 0 {
					rtt = append(rtt, ping)
					lat = append(lat, at.Sub(start))
				}
			}
			slices.Sort(rtt)
			slices.Sort(lat)
			med := func(d []time.Duration) time.Duration { return d[len(d)/2] }
			p95 := func(d []time.Duration) time.Duration { return d[(len(d)*95+99)/100-1] }
			t.Logf("%s, %d lone sends: ack after median %v, p95 %v, max %v; ping round trip median %v, p95 %v",
				kind, n, med(lat), p95(lat), lat[len(lat)-1], med(rtt), p95(rtt))
			// Reported, not asserted: a slow machine must not fail go test.
			// The benchmark program (internal/testkit/cmd/bench) checks the budget.
			if budget := 50*time.Millisecond + med(rtt); med(lat) > budget {
				t.Logf("median ack latency %v is over the budget of 50 ms plus a round trip (%v)", med(lat), budget)
			}
		})
	}
}
