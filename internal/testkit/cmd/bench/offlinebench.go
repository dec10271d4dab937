package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
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

// oWindowPrefix names an xmpptrack sender with a window of its own:
// "xmpptrack-w64" is sm.Config.Window 64, so that several windows run in
// one comparison, alternating with plain mellium.
const oWindowPrefix = oTracked + "-w"

// offlineWindow returns the sm.Config.Window of an offline sender: its
// -wN suffix, -1 for the unpaced sender, the -window flag for xmpptrack;
// ok is false for a name that is no offline sender.
func offlineWindow(sender string, flagWindow int) (w int, ok bool) {
	switch sender {
	case oTracked:
		return flagWindow, true
	case oUnpaced:
		return -1, true
	case oPlain:
		return 0, true
	}
	if rest, found := strings.CutPrefix(sender, oWindowPrefix); found {
		if n, err := strconv.Atoi(rest); err == nil && n > 0 {
			return n, true
		}
	}
	return 0, false
}

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
	load      string // the machine's load average after the run
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
			args := append(env.args(role, acc[0]), "-n", strconv.Itoa(o.offlineN), "-timeout", (40 * time.Minute).String())
			if w, _ := offlineWindow(s, o.window); w != 0 {
				args = append(args, "-window", strconv.Itoa(w))
			}
			cpu0 := treeCPU(srv.PID())
			run := offlineRun{sender: s, round: r}
			c, err := startChild(ctx, args, env.passwords(acc[0]))
			if err == nil {
				run.res, _, err = c.wait()
			}
			run.err = err
			run.serverCPU = treeCPU(srv.PID()) - cpu0
			run.load = loadavg()
			b.logf("offline: round %d %-17s %d messages processed by the server in %.1f s (written in %.1f s), server CPU %.1f s, load %s, err %v",
				r, s, o.offlineN, run.res.ToServer, run.res.Written, run.serverCPU, run.load, err)
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
	p, ok := map[string]string{oTracked: "ot", oUnpaced: "ou", oPlain: "op"}[sender]
	if !ok {
		p = "ow" + strings.TrimPrefix(sender, oWindowPrefix) + "x"
	}
	p += strconv.Itoa(round)
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
		mem := ""
		if p := r.res.Pending; p > 0 && r.err == nil {
			// The tracked senders keep every message pending (the
			// recipient is offline): the memory of section 3 comes free.
			mem = fmt.Sprintf(", per pending message: live heap %+.0f B, RSS %+.0f B (%+.0f B after FreeOSMemory)",
				float64(r.res.HeapAfter-r.res.HeapBefore)/float64(p), float64(r.res.RSSAfter-r.res.RSSBefore)/float64(p),
				float64(r.res.RSSFreed-r.res.RSSBefore)/float64(p))
		}
		fmt.Fprintf(w, "    round %d %-17s %6.1f s (%.0f msg/s%s), written in %.1f s, server CPU %.1f s, sender CPU %.2f s, load %s%s%s\n",
			r.round, r.sender, r.res.ToServer, float64(n)/max(r.res.ToServer, 1e-9), ratio, r.res.Written, r.serverCPU, r.res.CPU, r.load, mem, errText)
	}
}
