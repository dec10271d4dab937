package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// Senders of the bulk-to-offline comparison.
const (
	oTracked = "xmpptrack"         // the library's default pace (sm.DefaultWindow)
	oUnpaced = "xmpptrack-unpaced" // sm.Config.Window -1: writes as fast as it can
	oPlain   = "plain"             // bare mellium, no stream management
)

var offlineSenders = []string{oTracked, oUnpaced, oPlain}

// offlineSenderList returns the senders of the comparison, in order.
func (o *options) offlineSenderList() []string {
	if len(o.offlineSenders) == 0 {
		return offlineSenders
	}
	return o.offlineSenders
}

// offlineRun is one run of the bulk-to-offline comparison.
type offlineRun struct {
	sender    string
	round     int
	res       result
	serverCPU float64
	err       error
}

// runOfflineCompare sends o.offlineN messages to an offline account
// through a Prosody with its archive on, from each sender of
// offlineSenders in turn, for o.offlineRounds rounds: how the sending pace
// affects a server that archives every message. Every run has accounts of
// its own, so that no archive grows across runs.
func (b *bench) runOfflineCompare(ctx context.Context) ([]offlineRun, error) {
	o := b.opts
	var accounts []string
	for r := 1; r <= o.offlineRounds; r++ {
		for _, s := range o.offlineSenderList() {
			accounts = append(accounts, offlineAccounts(s, r)...)
		}
	}
	b.logf("starting prosody (archive on) for %d messages to an offline account per run", o.offlineN)
	srv, err := testserver.Launch(ctx, testserver.Prosody, testserver.Options{Accounts: accounts})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	var runs []offlineRun
	for r := 1; r <= o.offlineRounds; r++ {
		for _, s := range o.offlineSenderList() {
			acc := offlineAccounts(s, r)
			env := &serverEnv{srv: srv, addr: srv.Addr(), to: srv.JID(acc[1]).String()}
			role := rolePending
			if s == oPlain {
				role = roleOffline
			}
			args := append(env.args(role, acc[0]), "-n", strconv.Itoa(o.offlineN), "-timeout", (15 * time.Minute).String())
			switch {
			case s == oUnpaced:
				args = append(args, "-window", "-1")
			case s == oTracked && o.window != 0:
				args = append(args, "-window", strconv.Itoa(o.window))
			}
			cpu0 := treeCPU(srv.PID())
			run := offlineRun{sender: s, round: r}
			c, err := startChild(ctx, args, env.passwords(acc[0]))
			if err == nil {
				run.res, _, err = c.wait()
			}
			run.err = err
			run.serverCPU = treeCPU(srv.PID()) - cpu0
			b.logf("offline: round %d %-17s %d messages processed by the server in %.1f s (written in %.1f s), server CPU %.1f s, err %v",
				r, s, o.offlineN, run.res.ToServer, run.res.Written, run.serverCPU, err)
			runs = append(runs, run)
			if ctx.Err() != nil {
				return runs, ctx.Err()
			}
		}
	}
	return runs, nil
}

// offlineAccounts returns the sender's and the offline recipient's
// accounts of one run.
func offlineAccounts(sender string, round int) []string {
	p := map[string]string{oTracked: "ot", oUnpaced: "ou", oPlain: "op"}[sender] + strconv.Itoa(round)
	return []string{p + "-from", p + "-to"}
}

// reportOffline prints the runs of the comparison and the ratio of each
// tracked sender's time to plain mellium's in the same round.
func reportOffline(w io.Writer, n int, runs []offlineRun) {
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(w, "  bulk to an offline account (Prosody, archive on), %d messages per run, time until the server processed all (tracked: last ack; plain: answer to an IQ ping sent after them):\n", n)
	plain := map[int]float64{}
	for _, r := range runs {
		if r.sender == oPlain && r.err == nil {
			plain[r.round] = r.res.ToServer
		}
	}
	for _, r := range runs {
		ratio := ""
		if p := plain[r.round]; p > 0 && r.sender != oPlain && r.err == nil {
			ratio = fmt.Sprintf(", %.2f× plain", r.res.ToServer/p)
		}
		errText := ""
		if r.err != nil {
			errText = ", error: " + r.err.Error()
		}
		fmt.Fprintf(w, "    round %d %-17s %6.1f s (%.0f msg/s%s), written in %.1f s, server CPU %.1f s, sender CPU %.2f s%s\n",
			r.round, r.sender, r.res.ToServer, float64(n)/max(r.res.ToServer, 1e-9), ratio, r.res.Written, r.serverCPU, r.res.CPU, errText)
	}
}
