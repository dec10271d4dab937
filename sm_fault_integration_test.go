package xmpptrack

// Fault injection against real Prosody and ejabberd (issue 3).
//
// A sender (an xmpptrack.Client) reaches the server through
// internal/testkit/faultproxy, which cuts its connection at random points; a
// recipient (another Client) is connected directly and counts the ids it
// receives. Three scenarios run one after the other on one server of each
// kind, each with its own pair of accounts:
//
//   - resume: the proxy cuts the sender's connection at random bytes (and on
//     command at a few random messages). Every reconnection resumes the
//     stream: every message must be acknowledged exactly once and received,
//     and the client must retransmit exactly what each <resumed h/> did not
//     cover (checked on the wire, see wireAudit). A message received twice
//     is then the server's doing; the audit says which kind, and the test
//     reports it (ejabberd 23.01 sometimes routes stanzas of a dying
//     connection that its <resumed h/> does not count).
//   - freeze: the proxy freezes the sender's live connection (no FIN, no
//     RST, bytes stop flowing) twice during the burst. The sender must
//     notice within its ack bound (sm.Config.AckTimeout), reconnect and
//     resume; every message is acknowledged once and received.
//   - restart-resend and restart-lost: the server is restarted once while
//     the messages are being sent, so resumption fails (<failed/>), under the
//     default Resend policy and under ReportLost (see faultRestart for what
//     can be demanded). From the restart on, the proxy cuts at random
//     bytes, also while the lost stream's messages are re-sent.
//
// Every message id is accounted for: by the sender's stream management
// (OnAcked, OnLost, OnResend), by the tracking layer (OnStateChange), and by
// the recipient. A Send whose write failed returns an error and an Aborted
// tracker: the message is sent again under a new id, and the failed id must
// never arrive. The seed of the random cut points and restart moment is
// logged; XMPPTRACK_FAULT_SEED=<seed> replays it (up to scheduling).
// -short sends 200 messages per scenario instead of 1,000.
//
// Other environment variables: XMPPTRACK_FAULT_DEBUG=<dir> keeps the
// servers' debug logs; XMPPTRACK_FAULT_ALIGNED=1 aligns the cuts on
// Prosody, which avoids its 0.12 resumption bug (see dialSender).

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/testkit/faultproxy"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const (
	// faultSeedEnv replays a run: XMPPTRACK_FAULT_SEED=<seed logged by a run>.
	faultSeedEnv = "XMPPTRACK_FAULT_SEED"
	// faultDebugEnv, set to a directory, raises the servers' log level and
	// copies each server's directory (configuration, logs) there.
	faultDebugEnv = "XMPPTRACK_FAULT_DEBUG"
	// faultAlignedEnv, if set, aligns the cuts on Prosody, which avoids
	// the Prosody 0.12 resumption bug described in dialSender.
	faultAlignedEnv = "XMPPTRACK_FAULT_ALIGNED"
	// faultFreezes is how many times the freeze scenario freezes the
	// sender's connection.
	faultFreezes = 2
	// faultWait bounds one scenario.
	faultWait = 45 * time.Second
	// Budget range of the resume scenario, in bytes over both directions. A
	// message is about 250 bytes and a plaintext login and resumption about
	// 2.5 KB, so some cuts fall during negotiation and about one per 80
	// messages during the burst.
	faultMinBytes, faultMaxBytes = 1_000, 40_000
	// faultCommandCuts are cuts on command at random messages, so that even
	// -short runs cut.
	faultCommandCuts = 3
)

// faultMessageCount is the number of messages per scenario.
func faultMessageCount() int {
	if testing.Short() {
		return 200
	}
	return 1000
}

// faultSeed returns the run's seed, from faultSeedEnv or random.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv(faultSeedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", faultSeedEnv, s, err)
		}
		return seed
	}
	return rand.Uint64()
}

// subSeed derives the seed of one scenario on one server from the run's.
func subSeed(seed uint64, parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		io.WriteString(h, p)
		h.Write([]byte{0})
	}
	return seed ^ h.Sum64()
}

func TestFaultInjection(t *testing.T) {
	seed := faultSeed(t)
	t.Logf("seed %d (replay with %s=%d)", seed, faultSeedEnv, seed)
	n := faultMessageCount()
	scenarios := []struct {
		name string
		run  func(t *testing.T, f *faultScenario)
	}{
		{"resume", faultResume},
		{"freeze", faultFreeze},
		{"restart-resend", func(t *testing.T, f *faultScenario) { faultRestart(t, f, sm.Resend) }},
		{"restart-lost", func(t *testing.T, f *faultScenario) { faultRestart(t, f, sm.ReportLost) }},
	}
	var accounts []string
	for _, sc := range scenarios {
		accounts = append(accounts, sc.name+"-alice", sc.name+"-bob")
	}
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			// ejabberd archives on Mnesia at 20-70 messages per second
			// (measured on the 2-core test machine): its MAM is off, and mod_offline stores for
			// offline accounts. Prosody keeps MAM (the default); it stores
			// offline messages with mod_offline either way.
			debugDir := os.Getenv(faultDebugEnv)
			srv := testserver.Start(t, kind, testserver.Options{Accounts: accounts, NoMAM: kind == testserver.Ejabberd, Debug: debugDir != ""})
			if debugDir != "" {
				// Runs before the server's own clean-up removes its directory.
				t.Cleanup(func() { os.CopyFS(filepath.Join(debugDir, string(kind)), os.DirFS(srv.Dir())) })
			}
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					f := newFaultScenario(t, srv, sc.name, subSeed(seed, string(kind), sc.name), n)
					sc.run(t, f)
				})
			}
		})
	}
}

// faultScenario is one scenario: accounts, proxy, clients and ledger.
type faultScenario struct {
	srv      *testserver.Server
	prefix   string // of message ids
	seed     uint64
	rng      *rand.Rand
	n        int
	ctx      context.Context
	log      *faultLog
	led      *faultLedger
	audit    *wireAudit
	proxy    *faultproxy.Proxy
	alice    *Client
	bob      *Client
	sender   string // alice's bare JID
	barriers int    // barrier messages sent
}

func newFaultScenario(t *testing.T, srv *testserver.Server, name string, seed uint64, n int) *faultScenario {
	ctx, cancel := context.WithTimeout(t.Context(), faultWait)
	t.Cleanup(cancel)
	f := &faultScenario{
		srv:    srv,
		prefix: name,
		seed:   seed,
		rng:    rand.New(rand.NewPCG(seed, ^seed)),
		n:      n,
		ctx:    ctx,
		log:    &faultLog{max: 256 << 10},
		led:    newFaultLedger(),
		audit:  newWireAudit(),
		sender: srv.JID(name + "-alice").String(),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client and proxy log (seed %d):\n%s", seed, f.log.String())
		}
	})
	return f
}

// dialRecipient connects the recipient directly to the server. It counts
// every message from the sender and its reconnections.
func (f *faultScenario) dialRecipient(t *testing.T) {
	t.Helper()
	f.bob = faultDial(t, f.ctx, f.srv, f.prefix+"-bob", f.recipientConfig())
	f.bob.Observe(Observer{Connected: f.led.bobConnected})
}

func (f *faultScenario) recipientConfig() Config {
	return Config{
		Addr:           f.srv.Addr(),
		AllowPlaintext: true,
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
		NoReceipts:     true,
		NoMarkers:      true,
		Handler:        f.led.recipientHandler(f.sender),
		Logger:         f.log.logger("bob"),
	}
}

// dialSender starts the proxy and connects the sender through it.
func (f *faultScenario) dialSender(t *testing.T, policy sm.Policy) {
	t.Helper()
	p, err := faultproxy.Listen(faultproxy.Config{
		Target: f.srv.Addr(),
		Seed:   f.seed,
		// Prosody 0.12.3 parses a resumed connection with the XML parser
		// of the session's first connection: mod_c2s's session.data
		// closes over that connection's parser, and mod_smacks's
		// handle_resume moves stream, send, close and filters to the old
		// session object, but not data, while c2s_sessions[new conn]
		// becomes that object. If the old connection ended inside an
		// element, or is still being parsed when the client resumes (the
		// server lags behind a burst), that parser holds half a stanza and
		// the resumed stream is corrupt: stanzas vanish into it
		// unacknowledged, or the stream dies with not-well-formed,
		// policy-violation or stanza-too-big and the session with it.
		// Real networks do not align cuts, so the cuts fall at random
		// bytes on both servers: the client must notice such a failed
		// resumption and start a new session, re-sending what was not
		// acknowledged (sm package, "Failed resumptions").
		// XMPPTRACK_FAULT_ALIGNED=1 aligns the cuts on Prosody: the
		// server gets whole top-level elements and an orderly end, and
		// has closed the old connection before the new one reaches it
		// (the client's side is still reset at a random point), which
		// avoids the bug.
		Aligned: f.srv.Kind() == testserver.Prosody && os.Getenv(faultAlignedEnv) != "",
		Units:   faultproxy.XMPPUnits,
		Tap:     f.audit.tap,
		Logf:    f.log.printf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	f.proxy = p
	cfg := Config{
		Addr:           p.Addr(),
		AllowPlaintext: true,
		MinBackoff:     5 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
		Window:         -1, // no TimedOut: every tracker waits for its evidence
		OnStateChange:  f.led.stateChanged,
		StreamManagement: sm.Config{
			Policy:   policy,
			OnAcked:  f.led.onAcked,
			OnLost:   f.led.onLost,
			OnResend: f.led.onResend,
		},
		Logger: f.log.logger("alice"),
	}
	f.alice = faultDial(t, f.ctx, f.srv, f.prefix+"-alice", cfg)
	f.alice.Observe(Observer{Connected: f.led.aliceConnected, Disconnected: f.led.aliceDisconnected})
	// The server answers <enable/> before a later IQ: once a ping is
	// answered, the stream is resumable. A cut before that would make the
	// next connection a new session, which is not what a scenario starts
	// from.
	s, err := f.alice.Session(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := pingServer(f.ctx, s); err != nil {
		t.Fatalf("sender ping: %v", err)
	}
	if info := f.alice.sm.Info(); !info.Resumable {
		t.Fatalf("the sender's stream is not resumable: %+v", info)
	}
}

func faultDial(t *testing.T, ctx context.Context, srv *testserver.Server, local string, cfg Config) *Client {
	t.Helper()
	c, err := Dial(ctx, srv.JID(local), srv.Password(local), &cfg)
	if err != nil {
		t.Fatalf("Dial %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send sends message i until a write succeeds: the id of attempt k > 0 ends
// in "-r<k>". It returns the id that was written.
func (f *faultScenario) send(t *testing.T, i int) string {
	t.Helper()
	base := fmt.Sprintf("%s-%04d", f.prefix, i)
	for attempt := 0; ; attempt++ {
		id := base
		if attempt > 0 {
			id = fmt.Sprintf("%s-r%d", base, attempt)
		}
		f.led.attempt(id)
		gen := f.led.senderGeneration()
		_, err := f.alice.Send(f.ctx, Message{
			ID:         id,
			To:         f.srv.JID(f.prefix + "-bob"),
			Body:       "fault injection " + id,
			NoReceipt:  true, // acks only: a receipt would overtake DELIVERED_TO_SERVER
			NoMarkable: true,
		})
		if err == nil {
			f.led.written(id)
			return id
		}
		if f.ctx.Err() != nil || attempt >= 100 {
			t.Fatalf("Send %s: %v", id, err)
		}
		f.led.writeFailed(id)
		f.log.printf("Send %s failed: %v", id, err)
		// The session died under Send, and Send hands it out until the
		// client has noticed. Wait for the next connection, as an
		// application would (Observer.Connected).
		if err := f.led.wait(f.ctx, func() bool { return f.led.generationLocked() > gen }); err != nil {
			t.Fatalf("no reconnection after the failed write of %s: %v\n%s", id, err, f.led.missing())
		}
	}
}

// sendAll sends the scenario's messages in order; after message i it calls
// after(i) if set.
func (f *faultScenario) sendAll(t *testing.T, after func(i int)) {
	t.Helper()
	for i := range f.n {
		f.send(t, i)
		if after != nil {
			after(i)
		}
	}
}

// barrier proves that nothing sent before it is still on its way to the
// recipient rcpt: rcpt pings its server (so that its presence, and the
// offline messages that presence releases, were processed), then the
// sender sends one more message, and rcpt receives it. Servers deliver one
// sender's messages to one session in order. It returns the barrier's id.
func (f *faultScenario) barrier(t *testing.T, rcpt *Client) string {
	t.Helper()
	s, err := rcpt.Session(f.ctx)
	if err != nil {
		t.Fatalf("recipient session: %v", err)
	}
	if err := pingServer(f.ctx, s); err != nil {
		t.Fatalf("recipient ping: %v", err)
	}
	id := f.send(t, f.n+f.barriers) // one more, after the n messages
	f.barriers++
	err = f.led.wait(f.ctx, func() bool { return f.led.received[id] > 0 && f.led.smAcked[id] > 0 && f.led.toServer[id] > 0 })
	if err != nil {
		t.Fatalf("the barrier message %s did not arrive: %v", id, err)
	}
	return id
}

// finishAudit ends the sender and the proxy, then audits what reached the
// server. Problems are the client's: they fail the test.
func (f *faultScenario) finishAudit(t *testing.T, resend bool) auditReport {
	t.Helper()
	f.alice.Close()
	f.proxy.Close()
	f.audit.wait()
	r := f.audit.analyze(resend)
	for i, p := range r.problems {
		if i == 20 {
			t.Errorf("… %d more audit problems", len(r.problems)-i)
			break
		}
		t.Errorf("wire audit: %s", p)
	}
	return r
}

// faultResume: random cuts, every reconnection resumes.
func faultResume(t *testing.T, f *faultScenario) {
	f.dialRecipient(t)
	f.dialSender(t, sm.Resend)
	// Cuts start once the first connection is up (Dial must succeed).
	if err := f.proxy.SetBudget(faultMinBytes, faultMaxBytes); err != nil {
		t.Fatal(err)
	}
	cutAt := map[int]bool{}
	for len(cutAt) < faultCommandCuts {
		cutAt[f.rng.IntN(f.n)] = true
	}
	commanded := 0
	began := time.Now()
	f.sendAll(t, func(i int) {
		if cutAt[i] {
			commanded += f.proxy.Cut()
		}
	})
	sentIn := time.Since(began)
	l := f.led
	err := l.wait(f.ctx, func() bool {
		for _, id := range l.ids {
			if l.smAcked[id] == 0 || l.toServer[id] == 0 || l.received[id] == 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("not every message was acknowledged and received: %v\n%s", err, l.missing())
	}
	done := time.Since(began)
	f.proxy.SetBudget(0, 0) // no more cuts: the barrier must get through
	f.barrier(t, f.bob)
	info := f.alice.sm.Info()
	stats := f.proxy.Stats()
	audit := f.finishAudit(t, true)

	l.mu.Lock()
	defer l.mu.Unlock()
	if stats.Cuts == 0 {
		t.Error("the proxy cut nothing")
	}
	d := f.checkResumed(t, audit, info)
	cutMode := "at random bytes"
	if f.aligned() {
		cutMode = "aligned to the client's writes on the server's side"
	}
	t.Logf("%s resume: %d messages + 1 barrier in %v (all acked and received after %v); %d acked exactly once; "+
		"%d cuts %s (%d by byte budget, %d on command), %d connections; sender resumed %d times (%d <resumed/> on the wire, counting resumptions cut before they completed), "+
		"bound %d new sessions after failed resumptions (re-sending %d messages); "+
		"retransmitted %d stanzas that had reached the server (and those lost in the cuts); %d writes failed during a cut (sent again under a new id, never delivered); "+
		"recipient got %d ids twice: %d re-sent after a failed resumption, %d delivered twice by the server from one copy, %d routed by the server but not counted in its <resumed h/>",
		f.srv.Kind(), f.n, sentIn.Round(time.Millisecond), done.Round(time.Millisecond), len(l.ids), stats.Cuts, cutMode,
		stats.BudgetCuts, commanded, stats.Accepted, l.aliceResumed, audit.resumed, l.aliceFresh, d.resent, audit.retransmit,
		len(l.failedWrites), d.resentTwice+d.serverTwice+d.notCounted, d.resentTwice, d.serverTwice, d.notCounted)
}

// aligned reports whether the proxy aligns its cuts (see dialSender).
func (f *faultScenario) aligned() bool {
	return f.srv.Kind() == testserver.Prosody && os.Getenv(faultAlignedEnv) != ""
}

// resumeDups counts what the resume-like scenarios re-sent and received
// twice.
type resumeDups struct {
	resent      int // messages re-sent on a new session after a failed resumption
	resentTwice int // of them, received twice
	serverTwice int // received twice although one copy reached the server
	notCounted  int // retransmitted above <resumed h/>, yet the first copy had been routed
}

// checkResumed checks the client's part in the scenarios where every
// reconnection should resume (l.mu held): every message acknowledged
// exactly once, nothing lost, and (the audit) exactly what each <resumed
// h/> did not cover was retransmitted. A resumption the server accepted
// but then broke (Prosody 0.12 after a cut inside a stanza: see
// dialSender) makes the client start a new session and re-send; that is
// allowed on Prosody with unaligned cuts only, and a message received
// twice after such a re-send is counted. Any other second copy at the
// recipient is the server's doing; the audit tells which kind.
func (f *faultScenario) checkResumed(t *testing.T, audit auditReport, info sm.Info) resumeDups {
	t.Helper()
	l := f.led
	allowFresh := f.srv.Kind() == testserver.Prosody && !f.aligned()
	var d resumeDups
	for _, id := range l.ids {
		if l.smAcked[id] != 1 || l.toServer[id] != 1 || l.received[id] == 0 || l.aborted[id] != 0 || l.errored[id] != 0 ||
			l.resend[id] != 0 && !allowFresh {
			t.Errorf("%s: %s, want acked once and received", id, l.describe(id))
		}
		if l.resend[id] > 0 {
			d.resent++
		}
		if l.received[id] > 1 {
			switch {
			case l.resend[id] > 0:
				d.resentTwice++
			case len(audit.problems) > 0:
				t.Errorf("%s: %s", id, l.describe(id))
			case audit.forwards[id] <= 1:
				d.serverTwice++ // one copy reached the server, more left it
			default:
				d.notCounted++
			}
		}
	}
	l.checkFailedWrites(t)
	l.checkAcksOnWire(t, audit)
	if (l.aliceFresh != 0 || audit.failed != 0) && !allowFresh {
		t.Errorf("%d reconnections of the sender bound a new session (%d failed resumptions); every one should have resumed", l.aliceFresh, audit.failed)
	}
	if l.bobFresh+l.bobResumed != 0 {
		t.Errorf("the recipient reconnected %d times", l.bobFresh+l.bobResumed)
	}
	if info.Unacked != 0 || info.Acked != info.Sent {
		t.Errorf("sender's stream management: %+v, want everything acknowledged", info)
	}
	return d
}

// faultFreeze: the sender's live connection freezes (no FIN, no RST,
// bytes stop flowing) at random messages; the sender must notice within
// its ack bound, reconnect and resume, and lose nothing.
func faultFreeze(t *testing.T, f *faultScenario) {
	f.dialRecipient(t)
	f.dialSender(t, sm.Resend)
	freezeAt := map[int]bool{}
	for len(freezeAt) < faultFreezes {
		freezeAt[f.n/10+f.rng.IntN(f.n*8/10)] = true
	}
	var frozeAt []time.Time
	var bounds []time.Duration // the client's ack bound at each freeze
	began := time.Now()
	f.sendAll(t, func(i int) {
		if !freezeAt[i] {
			return
		}
		// Freeze a live connection: wait for the one after the last
		// freeze to be up and to have acknowledged something. (A resumed
		// connection that freezes before its first ack cannot be told
		// from a failed resumption: the client starts a new session and
		// re-sends, see the sm package, "Failed resumptions".)
		l := f.led
		if err := l.wait(f.ctx, func() bool {
			return l.generationLocked() >= len(frozeAt) && (len(frozeAt) == 0 || l.acks > l.acksAtConnect)
		}); err != nil {
			t.Fatalf("no connection to freeze: %v", err)
		}
		if f.proxy.Freeze() > 0 {
			frozeAt = append(frozeAt, time.Now())
			// No answer comes once frozen, so the bound stays put.
			bounds = append(bounds, f.alice.sm.Info().AckBound)
		}
	})
	sentIn := time.Since(began)
	l := f.led
	err := l.wait(f.ctx, func() bool {
		for _, id := range l.ids {
			if l.smAcked[id] == 0 || l.toServer[id] == 0 || l.received[id] == 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("not every message was acknowledged and received: %v\n%s", err, l.missing())
	}
	done := time.Since(began)
	f.barrier(t, f.bob)
	info := f.alice.sm.Info()
	stats := f.proxy.Stats()
	audit := f.finishAudit(t, true)

	l.mu.Lock()
	defer l.mu.Unlock()
	if len(frozeAt) == 0 {
		t.Fatal("the proxy froze nothing")
	}
	// Each freeze ends the connection by the client's ack bound
	// (sm.ErrAckTimeout): AckTimeout plus four smoothed round trips after
	// the first unanswered <r/>. That the bound is kept to the millisecond
	// is sm's TestDeadConnectionDetected (synctest); here, on a real server
	// and a shared machine, the time is only logged. It was asserted with
	// a second's allowance, but what is measured also holds the scheduling
	// of the sender's goroutines (the next message, its <r/>, the watchdog,
	// the loop taking the connection back) and of the Disconnected callback,
	// queued behind the callbacks before it, where the time is taken: on a
	// shared machine at load 17, under -race, that is not bounded by a
	// second (flaky once).
	var detect, enforced []time.Duration
	for _, at := range frozeAt {
		j := slices.IndexFunc(l.aliceDown, func(d faultDown) bool { return d.at.After(at) })
		if j < 0 {
			t.Errorf("the connection frozen at %v never ended", at.Sub(began))
			continue
		}
		down := l.aliceDown[j]
		detect = append(detect, down.at.Sub(at).Round(time.Millisecond))
		var ae *sm.AckTimeoutError
		if !errors.As(down.err, &ae) || !errors.Is(down.err, sm.ErrAckTimeout) {
			t.Errorf("frozen connection ended after %v with %v, want an *sm.AckTimeoutError (sm.ErrAckTimeout)", down.at.Sub(at), down.err)
			continue
		}
		// The bound it enforced, with no timing: AckTimeout plus four
		// smoothed round trips, at most AckTimeout again, and not given
		// up on before it ran out (its lateness is the machine's).
		if ae.Bound < sm.DefaultAckTimeout || ae.Bound > 2*sm.DefaultAckTimeout || ae.Waited < ae.Bound {
			t.Errorf("frozen connection ended with bound %v after %v of waiting; want a bound in [%v, %v], waited at least that",
				ae.Bound, ae.Waited, sm.DefaultAckTimeout, 2*sm.DefaultAckTimeout)
		}
		enforced = append(enforced, ae.Bound)
	}
	d := f.checkResumed(t, audit, info)
	t.Logf("%s freeze: %d messages + 1 barrier in %v (all acked and received after %v); %d freezes detected after %v (bounds %v at the freeze, %v enforced: AckTimeout + 4 RTT); "+
		"%d connections; sender resumed %d times, bound %d new sessions (re-sending %d messages); retransmitted %d stanzas; "+
		"recipient got %d ids twice (%d re-sent, %d by the server)",
		f.srv.Kind(), f.n, sentIn.Round(time.Millisecond), done.Round(time.Millisecond), stats.Frozen, detect, bounds, enforced,
		stats.Accepted, l.aliceResumed, l.aliceFresh, d.resent, audit.retransmit,
		d.resentTwice+d.serverTwice+d.notCounted, d.resentTwice, d.serverTwice+d.notCounted)
}

// faultRestart: the server restarts once while the messages are sent, so
// the sender's resumption fails.
//
// What the restart can do to a message, and what the test can therefore
// demand:
//
//   - The server acknowledged it before the restart: the server took
//     responsibility. Both servers close sessions gracefully on SIGTERM;
//     what they had written to the recipient's socket arrives (the
//     recipient reads up to the end of the stream), and what the recipient
//     had not acknowledged is stored offline (Prosody's mod_smacks; ejabberd
//     with resend_on_timeout) and delivered again when the recipient comes
//     back: a duplicate at the recipient that no sender policy can prevent.
//     Messages routed while the recipient is disconnected are stored
//     offline and delivered at its next initial presence. So every
//     acknowledged message must arrive, at least once.
//   - The server never handled it (it was in flight, or written after the
//     server stopped reading): only the sender knows about it. Under Resend
//     it is re-sent on the new session and must arrive; under ReportLost
//     it must be reported lost (ABORTED) and must not arrive.
//   - The server handled it but its acknowledgement was lost with the old
//     stream: on <failed/>, the sender only learns about it if the server
//     includes h. Prosody 0.12 keeps h across a restart (mod_smacks stores
//     it on shutdown and answers <failed h='…'/>), so for Prosody this case
//     becomes the first one. ejabberd 23.01 answers <failed/> without h, so
//     the sender cannot know: under Resend the message is re-sent and
//     arrives twice (counted), under ReportLost it is reported lost AND
//     arrives (counted, not a failure: the report was a false alarm that
//     the protocol cannot avoid).
//
// From the restart on, the proxy cuts the sender's connections at random
// bytes, as in the resume scenario, until every message is settled.
// sm.State.Start holds the lost stream's messages until the server
// answered <enable/>, so a cut during their re-send is resumed and only
// what the server did not acknowledge is retransmitted (the audit checks
// it); a cut before <enabled/> leaves them for the next connection. What
// the application wrote on a connection cut before <enabled/> goes to the
// policy like the rest (a re-sent copy the server had handled counts as a
// duplicate, under ReportLost a false loss report).
//
// Hence the assertions: under Resend every message is acknowledged exactly
// once and arrives at least once; under ReportLost every message ends in
// exactly one of acknowledged and lost, every acknowledged message arrives,
// and every message that did not arrive was reported lost. A message that
// neither arrives nor is reported fails the test. The restart also ends
// the recipient's connection; it reconnects on its own, and the barrier
// makes sure that what its server stored offline was delivered before the
// counts are taken.
func faultRestart(t *testing.T, f *faultScenario, policy sm.Policy) {
	f.dialRecipient(t)
	f.dialSender(t, policy)
	restartAt := f.n/4 + f.rng.IntN(f.n/2)
	restarted := make(chan error, 1)
	var restartTook time.Duration
	began := time.Now()
	f.sendAll(t, func(i int) {
		if i == restartAt {
			// Sending goes on while the server shuts down. Cuts start
			// with the restart, so that every connection after it is
			// cut too (the sender may be back before Restart returns).
			go func() {
				err := f.proxy.SetBudget(faultMinBytes, faultMaxBytes)
				start := time.Now()
				if err == nil {
					err = f.srv.Restart(f.ctx)
				}
				restartTook = time.Since(start)
				restarted <- err
				f.led.poke()
			}()
		}
	})
	sentIn := time.Since(began)
	if err := <-restarted; err != nil {
		t.Fatalf("restart: %v", err)
	}
	l := f.led
	err := l.wait(f.ctx, func() bool {
		if l.aliceFresh == 0 || l.bobFresh == 0 {
			return false // both must have come back after the restart
		}
		for _, id := range l.ids {
			switch {
			case l.smAcked[id] == 0 && l.lost[id] == 0: // the sender's outcome
				return false
			case l.smAcked[id] > 0 && l.toServer[id] == 0: // its tracking callback
				return false
			case l.lost[id] > 0 && l.aborted[id] == 0:
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("not every message was settled (acknowledged or reported lost): %v\n%s", err, l.missing())
	}
	f.proxy.SetBudget(0, 0) // no more cuts: the barriers must get through
	stats := f.proxy.Stats()
	// Everything acknowledged has reached the recipient's session once the
	// barrier has, or waits in offline storage, which the recipient's next
	// login delivers; only what is not there either is lost. (Under load,
	// 2 of 6 early runs saw ejabberd acknowledge a few messages after the
	// restart that the recipient's session never got; a message stored
	// offline after the recipient's presence had released offline storage
	// would look like that.)
	f.barrier(t, f.bob)
	missing := func() (ids []string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, id := range l.ids {
			if l.smAcked[id] > 0 && l.received[id] == 0 {
				ids = append(ids, id)
			}
		}
		return ids
	}
	var late, still []string
	if m := missing(); len(m) > 0 {
		f.bob.Close()
		cfg := f.recipientConfig()
		bob2 := faultDial(t, f.ctx, f.srv, f.prefix+"-bob", cfg)
		f.barrier(t, bob2)
		still = missing()
		for _, id := range m {
			if !slices.Contains(still, id) {
				late = append(late, id)
			}
		}
	}
	audit := f.finishAudit(t, policy == sm.Resend)
	// An acknowledged message that is nowhere is lost. The audit tells
	// whose doing that is: if the server's own h covered it on the wire,
	// the server took responsibility and lost it (ejabberd 23.01 does,
	// now and then, for messages acknowledged shortly before it stops);
	// otherwise the client reported an acknowledgement it never got.
	var serverLost []string
	for _, id := range still {
		if audit.wireAcked[id] {
			serverLost = append(serverLost, id)
		} // else checkAcksOnWire reports it
	}
	if len(serverLost) > 0 {
		t.Logf("%s LOST %d messages it had acknowledged on the wire (its h covered them), found neither in the recipient's session nor in offline storage: %v",
			f.srv.Kind(), len(serverLost), serverLost)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	var policyDups, serverDups, lostButReceived, lostCount, resent int
	for _, id := range l.ids {
		if l.smAcked[id]+l.lost[id] != 1 || l.toServer[id] != l.smAcked[id] || l.aborted[id] != l.lost[id] {
			t.Errorf("%s: %s, want exactly one of acknowledged and lost, mirrored by the tracker", id, l.describe(id))
		}
		if l.errored[id] != 0 {
			t.Errorf("%s: %s: the server bounced it", id, l.describe(id))
		}
		if l.received[id] == 0 && l.lost[id] == 0 && !slices.Contains(serverLost, id) {
			t.Errorf("%s: %s: SILENT: neither received nor reported lost", id, l.describe(id))
		}
		if policy == sm.Resend && (l.smAcked[id] != 1 || l.received[id] == 0 && !slices.Contains(serverLost, id)) {
			t.Errorf("%s: %s, want acknowledged once and received (Resend)", id, l.describe(id))
		}
		// A second copy carrying the sender's <delay/> is the policy's
		// re-send of a message the old server had handled without the
		// sender learning it (no h in <failed/>; the audit checked that
		// nothing an h covered was re-sent). A second copy without it is
		// the server's: it stored offline what the recipient had received
		// but not acknowledged before the restart.
		if extra := l.received[id] - 1; extra > 0 {
			own := min(l.ownDelay[id], extra)
			if l.ownDelay[id] == l.received[id] {
				own = extra // every copy stamped: the re-send also came back from offline storage
			}
			policyDups += own
			serverDups += extra - own
		}
		resent += l.resend[id]
		if l.lost[id] > 0 {
			lostCount++
			if l.received[id] > 0 {
				lostButReceived++
			}
		}
	}
	if policy == sm.ReportLost && resent != 0 {
		t.Errorf("%d messages were re-sent under ReportLost", resent)
	}
	l.checkFailedWrites(t)
	l.checkAcksOnWire(t, audit)
	if l.bobFresh == 0 || l.aliceFresh == 0 || audit.failed == 0 {
		t.Errorf("after the restart: sender bound %d new sessions (%d failed resumptions on the wire), recipient %d; want at least one each",
			l.aliceFresh, audit.failed, l.bobFresh)
	}
	hNote := "with h"
	if audit.failedNoH > 0 {
		hNote = "without h"
	}
	t.Logf("%s restart, policy %s: %d messages + %d barriers in %v, server restarted after message %d (restart took %v), resumption <failed/> %s; "+
		"%d acked exactly once, %d reported lost (%d of them received: handled by the old server, which did not say so); "+
		"%d re-sent by the policy; recipient duplicates: %d re-sent copies of messages the old server had handled, %d redelivered by the server (offline storage); "+
		"%d acknowledged but left in offline storage until the recipient's next login, %d acknowledged on the wire and lost by the server; "+
		"sender: %d resumed, %d new sessions, %d cuts from the restart on, %d connections; recipient: %d resumed, %d new sessions; %d writes failed and were sent again",
		f.srv.Kind(), policy, f.n, f.barriers, sentIn.Round(time.Millisecond), restartAt, restartTook.Round(time.Millisecond), hNote,
		len(l.ids)-lostCount, lostCount, lostButReceived, resent, policyDups, serverDups, len(late), len(serverLost),
		l.aliceResumed, l.aliceFresh, stats.BudgetCuts, stats.Accepted, l.bobResumed, l.bobFresh, len(l.failedWrites))
}

// faultLedger accounts for every message id.
type faultLedger struct {
	mu   sync.Mutex
	wake chan struct{} // poked on every change

	ids          []string        // ids written, one per message, in order
	attempted    map[string]bool // every id passed to Send
	failedWrites []string        // ids whose Send failed: never on the wire

	smAcked  map[string]int // sm OnAcked
	lost     map[string]int // sm OnLost
	resend   map[string]int // sm OnResend
	toServer map[string]int // DELIVERED_TO_SERVER transitions
	aborted  map[string]int // ABORTED transitions
	errored  map[string]int // ERROR transitions
	received map[string]int // copies that reached the recipient
	ownDelay map[string]int // of them, copies with the sender's re-send <delay/> (no from)

	aliceResumed, aliceFresh int         // reconnections of the sender
	aliceDown                []faultDown // ends of the sender's connections
	acks                     int         // sm OnAcked calls for messages
	acksAtConnect            int         // acks when the sender last connected
	bobResumed, bobFresh     int         // reconnections of the recipient
}

func newFaultLedger() *faultLedger {
	return &faultLedger{
		wake:      make(chan struct{}, 1),
		attempted: map[string]bool{},
		smAcked:   map[string]int{},
		lost:      map[string]int{},
		resend:    map[string]int{},
		toServer:  map[string]int{},
		aborted:   map[string]int{},
		errored:   map[string]int{},
		received:  map[string]int{},
		ownDelay:  map[string]int{},
	}
}

// update runs f under the lock and wakes waiters.
func (l *faultLedger) update(f func()) {
	l.mu.Lock()
	f()
	l.mu.Unlock()
	l.poke()
}

func (l *faultLedger) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// wait waits until cond, called under the lock, holds.
func (l *faultLedger) wait(ctx context.Context, cond func() bool) error {
	for {
		l.mu.Lock()
		ok := cond()
		l.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-l.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *faultLedger) attempt(id string) { l.update(func() { l.attempted[id] = true }) }
func (l *faultLedger) written(id string) {
	l.update(func() { l.ids = append(l.ids, id) })
}
func (l *faultLedger) writeFailed(id string) {
	l.update(func() { l.failedWrites = append(l.failedWrites, id) })
}

func (l *faultLedger) onAcked(s sm.Stanza) {
	if s.Name == "message" {
		l.update(func() {
			l.smAcked[s.ID]++
			l.acks++
		})
	}
}

func (l *faultLedger) onLost(s sm.Stanza) {
	if s.Name == "message" {
		l.update(func() { l.lost[s.ID]++ })
	}
}

func (l *faultLedger) onResend(s sm.Stanza) {
	if s.Name == "message" {
		l.update(func() { l.resend[s.ID]++ })
	}
}

func (l *faultLedger) stateChanged(t *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
	l.update(func() {
		switch to {
		case tracking.DeliveredToServer:
			l.toServer[t.ID()]++
		case tracking.Aborted:
			l.aborted[t.ID()]++
		case tracking.Error:
			l.errored[t.ID()]++
		}
	})
}

// senderGeneration counts the sender's connections since Dial.
func (l *faultLedger) senderGeneration() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.generationLocked()
}

func (l *faultLedger) generationLocked() int { return l.aliceResumed + l.aliceFresh }

func (l *faultLedger) aliceConnected(resumed bool) {
	l.update(func() {
		l.acksAtConnect = l.acks
		if resumed {
			l.aliceResumed++
		} else {
			l.aliceFresh++
		}
	})
}

func (l *faultLedger) aliceDisconnected(err error) {
	l.update(func() {
		l.aliceDown = append(l.aliceDown, faultDown{at: time.Now(), err: err})
	})
}

// faultDown is one end of a sender's connection.
type faultDown struct {
	at  time.Time
	err error
}

func (l *faultLedger) bobConnected(resumed bool) {
	l.update(func() {
		if resumed {
			l.bobResumed++
		} else {
			l.bobFresh++
		}
	})
}

// recipientHandler counts the messages from the sender's bare JID by id,
// parsed with stanza.ParseMessage, and notes which copies carry the
// sender's re-send stamp: a XEP-0203 <delay/> without a from attribute
// (the servers' own delays, for offline storage or their re-sends, name
// the server or the sender).
func (l *faultLedger) recipientHandler(sender string) xmpp.Handler {
	return xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "message" {
			return nil
		}
		var toks []xml.Token
		for {
			tok, err := r.Token()
			if tok != nil {
				toks = append(toks, xml.CopyToken(tok))
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		ev, err := stanza.ParseMessage(*start, &faultReplay{toks: toks})
		if err != nil || ev.Type == xstanza.ErrorMessage || ev.Body == "" || ev.From.Bare().String() != sender {
			return nil
		}
		own := 0
		for _, tok := range toks {
			if el, ok := tok.(xml.StartElement); ok && el.Name.Space == stanza.NSDelay && el.Name.Local == "delay" {
				if !slices.ContainsFunc(el.Attr, func(a xml.Attr) bool { return a.Name.Local == "from" }) {
					own = 1
				}
			}
		}
		l.update(func() {
			l.received[ev.ID]++
			l.ownDelay[ev.ID] += own
		})
		return nil
	})
}

// faultReplay reads buffered tokens.
type faultReplay struct {
	toks []xml.Token
	pos  int
}

func (r *faultReplay) Token() (xml.Token, error) {
	if r.pos >= len(r.toks) {
		return nil, io.EOF
	}
	r.pos++
	return r.toks[r.pos-1], nil
}

// describe summarizes what is known about one id. The caller holds the lock.
func (l *faultLedger) describe(id string) string {
	return fmt.Sprintf("sm acked %d, lost %d, resent %d; tracker DELIVERED_TO_SERVER %d, ABORTED %d, ERROR %d; received %d (%d with the re-send stamp)",
		l.smAcked[id], l.lost[id], l.resend[id], l.toServer[id], l.aborted[id], l.errored[id], l.received[id], l.ownDelay[id])
}

// missing describes the ids that are not settled yet, at most 20.
func (l *faultLedger) missing() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	shown := 0
	for _, id := range l.ids {
		if l.smAcked[id] == 1 && l.toServer[id] == 1 && l.received[id] > 0 || l.lost[id] == 1 && l.aborted[id] == 1 && l.received[id] == 0 {
			continue
		}
		if shown++; shown > 20 {
			b.WriteString("…\n")
			break
		}
		fmt.Fprintf(&b, "%s: %s\n", id, l.describe(id))
	}
	copies, most, mostID := 0, 0, ""
	for id, n := range l.received {
		copies += n
		if n > most {
			most, mostID = n, id
		}
	}
	fmt.Fprintf(&b, "sender reconnections: %d resumed, %d new; recipient: %d resumed, %d new; recipient got %d copies of %d ids (%s %d times)\n",
		l.aliceResumed, l.aliceFresh, l.bobResumed, l.bobFresh, copies, len(l.received), mostID, most)
	return b.String()
}

// checkAcksOnWire checks every acknowledgement the client reported
// against the h values the server sent. The caller holds the lock.
func (l *faultLedger) checkAcksOnWire(t *testing.T, audit auditReport) {
	t.Helper()
	for _, id := range l.ids {
		if l.smAcked[id] > 0 && !audit.wireAcked[id] {
			t.Errorf("%s: %s, but no h the server sent covers it", id, l.describe(id))
		}
	}
}

// checkFailedWrites checks that no id whose write failed left a trace but
// its ABORTED tracker, and that nothing arrived that was never sent. The
// caller holds the lock.
func (l *faultLedger) checkFailedWrites(t *testing.T) {
	t.Helper()
	for _, id := range l.failedWrites {
		if l.received[id] != 0 || l.smAcked[id] != 0 || l.lost[id] != 0 || l.resend[id] != 0 || l.toServer[id] != 0 || l.aborted[id] != 1 {
			t.Errorf("%s (its write failed): %s, want ABORTED once and nothing else", id, l.describe(id))
		}
	}
	for id := range l.received {
		if !l.attempted[id] {
			t.Errorf("the recipient received %q, which was never sent", id)
		}
	}
}

// faultLog keeps the tail of the clients' and the proxy's logs, shown when
// a scenario fails.
type faultLog struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (l *faultLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - l.max; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	return len(p), nil
}

func (l *faultLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

func (l *faultLog) printf(format string, args ...any) {
	fmt.Fprintf(l, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
}

func (l *faultLog) logger(who string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})).With("who", who)
}

// pingServer sends an XEP-0199 ping to the session's server and waits for
// the answer.
func pingServer(ctx context.Context, s *xmpp.Session) error {
	server := s.LocalAddr().Domain()
	iq := xstanza.IQ{ID: NewID(), To: server, Type: xstanza.GetIQ}
	resp, err := s.SendIQ(ctx, iq.Wrap(xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "urn:xmpp:ping", Local: "ping"}})))
	if err != nil {
		return err
	}
	defer resp.Close()
	tok, err := resp.Token()
	if err != nil {
		return err
	}
	start, ok := tok.(xml.StartElement)
	if !ok {
		return errors.New("ping: no answer element")
	}
	for _, a := range start.Attr {
		if a.Name.Local == "type" && a.Value != string(xstanza.ResultIQ) {
			return fmt.Errorf("ping: answer of type %s", a.Value)
		}
	}
	return nil
}

// The wire audit: from the bytes the fault proxy forwarded, it
// reconstructs which stanzas reached the server, on which connection and
// with which XEP-0198 sequence number, and what the server answered
// (<enabled/>, <resumed h/>, <failed h/>). It checks the client against
// the protocol independently of the client's own bookkeeping, and tells
// who caused a duplicate at the recipient.

// wireAudit collects the top-level elements of every proxied connection.
type wireAudit struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[int]*auditConn
}

// auditConn is what one connection carried, complete elements only (an
// element cut short never reached the server whole).
type auditConn struct {
	up, down []auditEvent
}

// auditEvent is one top-level element.
type auditEvent struct {
	name string // local name: message, presence, iq, enable, resume, enabled, resumed, failed, a, r, ...
	id   string // id attribute of a stanza
	h    uint32
	hasH bool
}

func (e auditEvent) stanza() bool {
	return e.name == "message" || e.name == "presence" || e.name == "iq"
}

func (e auditEvent) key() string { return e.name + " " + e.id }

func newWireAudit() *wireAudit { return &wireAudit{conns: map[int]*auditConn{}} }

// tap is a faultproxy Config.Tap.
func (a *wireAudit) tap(conn int) (up, down io.Writer) {
	c := &auditConn{}
	a.mu.Lock()
	a.conns[conn] = c
	a.mu.Unlock()
	return a.decoder(&c.up), a.decoder(&c.down)
}

// decoder returns a writer whose bytes are parsed into events appended to
// *dst. Stream headers (including restarts) reset the depth; elements at
// depth one are recorded when they end, and a <failed/> also when the
// connection ends inside it.
func (a *wireAudit) decoder(dst *[]auditEvent) io.WriteCloser {
	pr, pw := io.Pipe()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer io.Copy(io.Discard, pr) // never block the proxy, whatever happened
		d := xml.NewDecoder(pr)
		depth := 0
		var cur auditEvent
		for {
			tok, err := d.RawToken()
			if err != nil {
				// A <failed/> cut short after its start tag: the client
				// gives the stream up all the same, ignoring the h of an
				// element it could not read whole.
				if depth >= 2 && cur.name == "failed" {
					cur.h, cur.hasH = 0, false
					a.mu.Lock()
					*dst = append(*dst, cur)
					a.mu.Unlock()
				}
				return
			}
			switch t := tok.(type) {
			case xml.StartElement:
				if t.Name.Space == "stream" && t.Name.Local == "stream" {
					depth = 1
					continue
				}
				depth++
				if depth == 2 {
					cur = auditEvent{name: t.Name.Local}
					for _, at := range t.Attr {
						switch at.Name.Local {
						case "id":
							cur.id = at.Value
						case "h":
							if h, err := strconv.ParseUint(at.Value, 10, 32); err == nil {
								cur.h, cur.hasH = uint32(h), true
							}
						}
					}
				}
			case xml.EndElement:
				if t.Name.Space == "stream" && t.Name.Local == "stream" {
					depth = 0
					continue
				}
				if depth == 2 {
					a.mu.Lock()
					*dst = append(*dst, cur)
					a.mu.Unlock()
				}
				depth--
			}
		}
	}()
	return pw
}

// wait waits until every connection's bytes were parsed. Call it after the
// proxy was closed.
func (a *wireAudit) wait() { a.wg.Wait() }

// auditReport is the result of the audit.
type auditReport struct {
	problems   []string       // the client broke the protocol
	forwards   map[string]int // complete copies of each message id that reached the server
	resumed    int            // successful resumptions
	failed     int            // failed resumptions
	failedNoH  int            // of them, <failed/> without h
	retransmit int            // stanzas retransmitted after <resumed/>
	// wireAcked holds the message ids that an h the server sent (in <a/>,
	// <resumed/> or <failed/>) covers: the server acknowledged them on the
	// wire, whatever the client made of it.
	wireAcked map[string]bool
}

// analyze replays the connections in order. Within one stream management
// session, the n-th stanza after <enable/> has number n; after <resumed h/>
// the client numbers on from h, and must retransmit, first and in order,
// exactly the stanzas numbered above h: the stanza it writes with number s
// must be the one it wrote before with number s, whenever both are known.
// After <failed h/> it must not send again what h covers; under ReportLost
// (resend false) it sends nothing of the old session again.
func (a *wireAudit) analyze(resend bool) auditReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := auditReport{forwards: map[string]int{}, wireAcked: map[string]bool{}}
	problem := func(format string, args ...any) { r.problems = append(r.problems, fmt.Sprintf(format, args...)) }

	seqKey := map[uint32]string{} // session: number -> stanza
	keySeq := map[string]uint32{} // session: stanza -> number
	var covered map[string]bool   // stanzas of the previous session a <failed/> settled
	// ack marks the session's stanzas numbered up to h as acknowledged.
	ack := func(h uint32) {
		for k, s := range keySeq {
			if s <= h && strings.HasPrefix(k, "message ") {
				r.wireAcked[strings.TrimPrefix(k, "message ")] = true
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(a.conns)) {
		c := a.conns[n]
		var answer *auditEvent // the server's answer to <resume/>
		for i := range c.down {
			if e := c.down[i]; e.name == "resumed" || e.name == "failed" {
				answer = &c.down[i]
				break
			}
		}
		const (
			idle     = iota // before <enable/> or <resume/>: not counted
			counting        // stanzas are numbered
			dead            // <resume/> unanswered on this connection
		)
		mode, seq := idle, uint32(0)
		resumed, resumeH := false, uint32(0)
		for _, e := range c.up {
			switch {
			case e.name == "resume":
				switch {
				case answer != nil && answer.name == "resumed":
					mode, seq = counting, answer.h
					resumed, resumeH = true, answer.h
					r.resumed++
				case answer != nil:
					r.failed++
					if !answer.hasH {
						r.failedNoH++
					} else {
						ack(answer.h)
					}
					// What the old session numbered up to h is
					// acknowledged; the rest goes to the policy, which
					// re-sends messages only under Resend.
					covered = map[string]bool{}
					for k, s := range keySeq {
						if !resend || answer.hasH && s <= answer.h {
							covered[k] = true
						}
					}
					mode = idle
				default:
					mode = dead
				}
			case e.name == "enable":
				mode, seq = counting, 0
				resumed = false
				seqKey, keySeq = map[uint32]string{}, map[string]uint32{}
			case e.stanza():
				if e.name == "message" {
					r.forwards[e.id]++
				}
				switch mode {
				case dead:
					problem("conn %d: %s written after an unanswered <resume/>", n, e.key())
				case counting:
					seq++
					k := e.key()
					if resumed {
						if old, ok := keySeq[k]; ok && old <= resumeH {
							problem("conn %d: %s retransmitted as number %d although <resumed h='%d'/> acknowledged it (it was number %d)", n, k, seq, resumeH, old)
						}
						if prev, ok := seqKey[seq]; ok && prev != k {
							problem("conn %d: number %d is %s, but before <resumed h='%d'/> it was %s", n, seq, k, resumeH, prev)
						} else if ok {
							r.retransmit++
						}
					}
					if covered[k] {
						problem("conn %d: %s sent again although the failed resumption settled it", n, k)
					}
					seqKey[seq], keySeq[k] = k, seq
				}
			}
		}
		// The server's acks on this connection refer to the session the
		// connection ended in (a <failed/> comes before its new session's
		// acks, and was handled above).
		for _, e := range c.down {
			if (e.name == "a" || e.name == "resumed") && e.hasH && mode != dead {
				ack(e.h)
			}
		}
	}
	return r
}
