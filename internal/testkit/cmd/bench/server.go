package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/interop"
	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// serverResults are the measurements against one server.
type serverResults struct {
	kind      testserver.Kind
	runs      map[string][]run // by sender, one per round
	rcount    []rcountRun
	latency   *result
	responder *result
	respProc  proc
	failures  []string
}

// run is one sender's run.
type run struct {
	res       result
	proc      proc
	serverCPU float64          // seconds of the server's CPU during the run
	serverIO  procio.Counters  // the server's /proc/PID/io during the run (every session's traffic, the responder's too)
	dropped   int              // answers the responder dropped during the run
	syscalls  map[string]int64 // the server's system calls during the run (-server-syscalls)
	// syscallsErr says why -server-syscalls counted none in this run.
	syscallsErr string
	otherLoad   float64 // cores busy with processes not of this benchmark, on average
	err         error
}

// rcountRun is a tracked run through the counting relay.
type rcountRun struct {
	sender          string
	res             run
	r, stanzas, msg int64
	a               int64 // acks the server sent
	serverR         int64 // ack requests the server sent
	clientA         int64 // acks the client sent
}

// pendingResult is the memory of many pending trackers.
type pendingResult struct {
	res  result
	proc proc
}

// senderAccounts names the accounts of one run of a sender: every run has
// accounts of its own, so that nothing a server keeps for a closed session
// (stanzas it re-routes to the account, offline storage) reaches another
// run.
func senderAccounts(sender, label string, k int) []string {
	kind, _ := lookupSender(sender)
	prefix := kind.prefix
	prefix += "-" + label
	switch sender {
	case sPostgres2:
		k = 2
	case sCeiling, sCeilingSM:
	default:
		return []string{prefix}
	}
	var a []string
	for i := 1; i <= k; i++ {
		a = append(a, prefix+"-"+strconv.Itoa(i))
	}
	return a
}

// runServer starts a server of kind with its archive off and the responder,
// then runs the warm-up, the rounds, the <r/> count runs and the latency
// measurement against it.
func (b *bench) runServer(ctx context.Context, kind testserver.Kind) (*serverResults, error) {
	o := b.opts
	sr := &serverResults{kind: kind, runs: map[string][]run{}}
	accounts := []string{"responder", "lat", "ping"}
	for _, s := range o.senders {
		for _, l := range o.runLabels(s) {
			accounts = append(accounts, senderAccounts(s, l, o.ceilingSenders)...)
		}
	}
	b.logf("starting %s (archive off)", kind)
	srv, err := testserver.Launch(ctx, kind, testserver.Options{Accounts: accounts, NoMAM: true})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	env := &serverEnv{srv: srv, addr: srv.Addr()}
	if o.tls {
		dir, err := os.MkdirTemp("", "xmpptrack-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		env.cafile = filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(env.cafile, srv.CertPEM(), 0o600); err != nil {
			return nil, err
		}
	}

	respArgs := append(env.args(roleResponder, "responder"), "-markers", o.markers)
	if o.profileDir != "" {
		respArgs = append(respArgs, "-cpuprofile", filepath.Join(o.profileDir, string(kind)+"-responder.pprof"))
	}
	resp, err := startChild(ctx, respArgs, env.passwords("responder"))
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	ready, err := resp.ready(rctx)
	cancel()
	if err != nil {
		resp.wait()
		return nil, fmt.Errorf("responder: %w", err)
	}
	env.to, env.resp = ready.JID, resp
	b.logf("%s: responder is %s", kind, env.to)

	senders := o.senders
	if err := interop.Available(interop.Aioxmpp); err != nil && slices.Contains(senders, sAioxmpp) {
		b.notes = append(b.notes, fmt.Sprintf("%s: aioxmpp skipped: %v", kind, err))
		senders = slices.DeleteFunc(slices.Clone(senders), func(s string) bool { return s == sAioxmpp })
	}
	if o.warmup {
		wn := max(o.n/10, 50)
		for _, s := range senders {
			r := b.runSender(ctx, env, s, "w", wn, env.addr, "")
			b.logf("%s: warm-up %-10s %s", kind, s, r.summary())
		}
	}
	for round := 1; round <= o.rounds; round++ {
		for _, s := range senders {
			prof := ""
			if o.profileDir != "" && s != sAioxmpp {
				prof = filepath.Join(o.profileDir, fmt.Sprintf("%s-%s-r%d.pprof", kind, s, round))
			}
			r := b.runSender(ctx, env, s, strconv.Itoa(round), o.n, env.addr, prof)
			b.logf("%s: round %d %-10s %s", kind, round, s, r.summary())
			if r.err != nil {
				used := map[bool]string{true: "used", false: "not used"}[r.usable()]
				sr.failures = append(sr.failures, fmt.Sprintf("round %d %s (%s): %v", round, s, used, r.err))
			}
			sr.runs[s] = append(sr.runs[s], r)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	if o.rcountRuns > 0 && o.tls {
		b.notes = append(b.notes, fmt.Sprintf("%s: <r/> count runs skipped: the counting relay needs plaintext", kind))
	}
	if o.rcountRuns > 0 && !o.tls {
		rl, err := newRelay(env.addr)
		if err != nil {
			return nil, err
		}
		for _, sender := range o.rcountSenders() {
			for i := 0; i < o.rcountRuns; i++ {
				up, down := rl.reset()
				r := b.runSender(ctx, env, sender, "c"+strconv.Itoa(i+1), o.n, rl.Addr(), "")
				rc := rcountRun{sender: sender, res: r, r: up.r.Load(), stanzas: up.stanzas(), msg: up.message.Load(), a: down.a.Load(),
					serverR: down.r.Load(), clientA: up.a.Load()}
				b.logf("%s: %s <r/> count run %d: %d <r/> for %d stanzas (%d messages), %d <a/> back; the server sent %d <r/>, answered with %d <a/>; %s",
					kind, sender, i+1, rc.r, rc.stanzas, rc.msg, rc.a, rc.serverR, rc.clientA, r.summary())
				sr.rcount = append(sr.rcount, rc)
			}
		}
		rl.Close()
	}
	if o.latencySamples > 0 {
		c, err := startChild(ctx, append(env.args(roleLatency, "lat", "ping"), "-samples", strconv.Itoa(o.latencySamples)), env.passwords("lat", "ping"))
		if err == nil {
			res, _, werr := c.wait()
			if werr != nil {
				sr.failures = append(sr.failures, "latency: "+werr.Error())
			}
			sr.latency = &res
			b.logf("%s: lone message to DELIVERED_TO_SERVER: median %s, ping median %s",
				kind, ms(median(res.AckLatency)), ms(median(res.PingRTT)))
		}
	}
	rres, rproc, err := resp.wait()
	if err != nil {
		sr.failures = append(sr.failures, "responder: "+err.Error())
	}
	sr.responder, sr.respProc = &rres, rproc
	return sr, nil
}

// serverEnv is what a sender needs to reach the server and the responder.
type serverEnv struct {
	srv    *testserver.Server
	addr   string
	cafile string
	to     string
	resp   *child // the responder
}

func (e *serverEnv) jids(locals ...string) string {
	var j []string
	for _, l := range locals {
		j = append(j, e.srv.JID(l).String())
	}
	return strings.Join(j, ",")
}

func (e *serverEnv) passwords(locals ...string) []string {
	var p []string
	for _, l := range locals {
		p = append(p, e.srv.Password(l))
	}
	return p
}

// args returns a child's command line for role with the given accounts.
func (e *serverEnv) args(role string, locals ...string) []string {
	a := []string{"-role=" + role, "-addr", e.addr, "-jid", e.jids(locals...)}
	if e.to != "" {
		a = append(a, "-to", e.to)
	}
	if e.cafile != "" {
		a = append(a, "-cafile", e.cafile)
	}
	return a
}
