package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// Senders of the bulk-to-offline comparison.
const (
	oTracked = "xmpptrack"         // the library's default pace (the default window, sm.MinWindow to sm.DefaultWindow)
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
	serverCPU float64         // Prosody's CPU seconds during the child's whole run
	wall      float64         // seconds of the child's whole run (start-up and log-in included)
	serverIO  procio.Counters // Prosody's /proc/PID/io during the child's run
	diskW     int64           // bytes the machine's physical disks wrote during the run (everyone's)
	dirty     int64           // the machine's dirty and writeback KiB when the run started (everyone's)
	otherLoad float64         // cores other processes took during the run
	load      string          // the machine's load average after the run
	err       error
}

// busyShare is Prosody's CPU over the child's whole run, as a share of
// that run's time: Prosody pausing its reads (see the package
// documentation) lowers it, and so does other load. Both cover the
// child's start-up and log-in (about 0.07 s of Prosody's CPU), which
// weigh little only with thousands of messages.
func (r offlineRun) busyShare() float64 { return r.serverCPU / max(r.wall, 1e-9) }

// ioLine describes Prosody's file and disk traffic per message.
func (r offlineRun) ioLine(n int) string {
	m := float64(max(n, 1))
	return fmt.Sprintf("Prosody per message: read calls %.0f B (sockets and cached files), storage reads %.0f B, page cache dirtied %.0f B; machine's physical disks wrote %.1f MB, %d MiB dirty at the start",
		float64(r.serverIO.RChar)/m, float64(r.serverIO.ReadBytes)/m, float64(r.serverIO.WriteBytes)/m, float64(r.diskW)/1e6, r.dirty>>10)
}

// runOfflineCompare sends o.offlineN messages to an offline account
// through a Prosody with its archive on, from each sender of
// offlineSenders, for o.offlineRounds rounds: how the sending pace
// affects a server that archives every message. The runs start alike:
// every run has a Prosody of its own (a fresh process on an empty data
// directory, removed after the run, so that no archive, cache or Lua heap
// carries over, and the run's files, deleted, leave no writeback to the
// next run), and the order of the senders changes from round to round
// (offlineOrder).
func (b *bench) runOfflineCompare(ctx context.Context) ([]offlineRun, error) {
	o := b.opts
	b.logf("bulk to an offline account: a Prosody (archive on) per run, %d messages per run", o.offlineN)
	var runs []offlineRun
	for r := 1; r <= o.offlineRounds; r++ {
		for _, s := range offlineOrder(o.offlineSenderList(), r) {
			run := b.runOfflineOne(ctx, s, r)
			b.logf("offline: round %d %-17s %d messages processed by the server in %.1f s (written in %.1f s), server CPU %.1f s (%.0f%% of the run), other load %.2f cores, load %s; %s; err %v",
				r, s, o.offlineN, run.res.ToServer, run.res.Written, run.serverCPU, 100*run.busyShare(), run.otherLoad, run.load, run.ioLine(o.offlineN), run.err)
			runs = append(runs, run)
			if ctx.Err() != nil {
				return runs, ctx.Err()
			}
		}
	}
	return runs, nil
}

// runOfflineOne runs sender once in round r, on a Prosody of its own.
func (b *bench) runOfflineOne(ctx context.Context, s string, r int) (run offlineRun) {
	o := b.opts
	run = offlineRun{sender: s, round: r}
	acc := offlineAccounts(s, r)
	srv, err := testserver.Launch(ctx, testserver.Prosody, testserver.Options{Accounts: acc})
	if err != nil {
		run.err = err
		return run
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			run.err = errors.Join(run.err, fmt.Errorf("stopping prosody: %w", err))
		}
	}()
	env := &serverEnv{srv: srv, addr: srv.Addr(), to: srv.JID(acc[1]).String()}
	role := rolePending
	if s == oPlain {
		role = roleOffline
	}
	args := append(env.args(role, acc[0]), "-n", strconv.Itoa(o.offlineN), "-timeout", (40 * time.Minute).String())
	if w, _ := offlineWindow(s, o.window); w != 0 {
		args = append(args, "-window", strconv.Itoa(w))
	}
	run.dirty = dirtyKiB()
	cpu0, io0 := treeUsage(srv.PID())
	disk0 := diskWrittenBytes()
	busy0, total0 := cpuTicks()
	self0, began := cpuNow(), time.Now()
	c, err := startChild(ctx, args, env.passwords(acc[0]))
	var p proc
	if err == nil {
		run.res, p, err = c.wait()
	}
	run.wall = time.Since(began).Seconds()
	run.err = err
	cpu1, io1 := treeUsage(srv.PID())
	run.serverCPU, run.serverIO = cpu1-cpu0, io1.Sub(io0)
	run.diskW = diskWrittenBytes() - disk0
	run.otherLoad = otherCores(busy0, total0, run.wall, run.serverCPU+p.CPU+(cpuNow()-self0).Seconds())
	run.load = loadavg()
	return run
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
		fmt.Fprintf(w, "    round %d %-17s %6.1f s (%.0f msg/s%s), written in %.1f s, server CPU %.1f s (%.0f%% of the run), sender CPU %.2f s, other load %.2f cores, load %s; %s%s%s\n",
			r.round, r.sender, r.res.ToServer, float64(n)/max(r.res.ToServer, 1e-9), ratio, r.res.Written, r.serverCPU,
			100*r.busyShare(), r.res.CPU, r.otherLoad, r.load, r.ioLine(n), mem, errText)
	}
}
