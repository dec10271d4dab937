package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
	"github.com/xmpptrack/xmpptrack/sm"
)

// runPending sends a.n tracked messages to an account that is offline
// (a.to, through a server that archives them instead of bouncing them),
// waits until the server acknowledged all of them, and reports the growth
// of the resident set and of the live heap while all a.n trackers are
// pending (DELIVERED_TO_SERVER, waiting for a receipt), with the most heap
// in use while sending and the process's own peak resident set until then
// (Close, which follows, turns every tracker CLOSED and queues as many
// changes for OnStateChange: the kernel's peak for the child includes it).
func runPending(ctx context.Context, a *childArgs) result {
	res := result{N: a.n}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	to, err := jid.Parse(a.to)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	m := newMilestones(a.n)
	c, err := dialTracked(ctx, a, xmpptrack.Config{
		OnStateChange:    m.change,
		MaxPending:       -1, // no bound: all of them pending at once
		Window:           -1, // no tracking window: nothing times out
		StreamManagement: sm.Config{Window: a.window},
	})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer c.Close()
	time.Sleep(200 * time.Millisecond) // log-in traffic settles
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	res.HeapBefore, res.RSSBefore, res.FileBefore = int64(ms.HeapAlloc), rssNow(), procio.SelfStatus("RssFile:")

	stopProfile := profile(a.cpuprofile)
	defer stopProfile()
	cpu0 := cpuNow()
	t0 := time.Now()
	m.t0.Store(t0.UnixNano())
	peak := startHeapPeak(20 * time.Millisecond)
	defer peak.stop()
	for i := range a.n {
		if _, err := c.Send(ctx, xmpptrack.Message{To: to, Body: body(i)}); err != nil {
			res.Error = fmt.Sprintf("send %d: %v", i, err)
			return res
		}
		if (i+1)%20000 == 0 {
			fmt.Fprintf(os.Stderr, "bench: pending: %d written, %d acknowledged after %v\n",
				i+1, m.count[msServer].Load(), time.Since(t0).Round(time.Millisecond))
		}
	}
	res.Written = seconds(time.Since(t0))
	select {
	case <-m.reached[msServer]:
	case <-ctx.Done():
		res.Error = fmt.Sprintf("only %d of %d acknowledged: %v", m.count[msServer].Load(), a.n, ctx.Err())
	}
	res.CPU = seconds(cpuNow() - cpu0)
	res.PeakHeap, res.PeakGoal = peak.stop()
	m.fill(&res)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	res.HeapAfter, res.RSSAfter, res.FileAfter = int64(ms.HeapAlloc), rssNow(), procio.SelfStatus("RssFile:")
	res.PeakOwnRSS = hwmNow()
	debug.FreeOSMemory() // what remains is what the live heap needs
	res.RSSFreed = rssNow()
	res.Pending = res.CntServer - res.CntRecip - res.Failed
	res.Complete = res.Error == "" && res.Failed == 0
	runtime.KeepAlive(c)
	return res
}
