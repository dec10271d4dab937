package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// phase is one side's run in a round.
type phase struct {
	d    time.Duration   // until the server acknowledged every message
	lats []time.Duration // the POST latencies (the gateway's)
	cpu  cpuUse          // over d
	tail cpuUse          // after d, until the recipient got every message
	io   ioUse           // system calls over d
}

// round is one round: both sides' runs of n messages.
type round struct {
	directFirst     bool
	direct, gateway phase
}

// measure runs one side: send returns once the server acknowledged every
// message; then, untimed, settle waits until the recipient got them all.
// The CPU time over the timed window and over the wait are kept apart.
func measure(pids pidSet, send func() (time.Duration, []time.Duration, error), settle func() error) (phase, error) {
	c0 := cpuStart(pids)
	// The system calls are counted inside the CPU samples, so that the
	// /proc scans of the samples do not count.
	io0 := ioNow(pids.load)
	d, lats, err := send()
	if err != nil {
		return phase{}, err
	}
	io1 := ioNow(pids.load)
	c1 := cpuEnd(pids)
	t0 := cpuStart(pids)
	if err := settle(); err != nil {
		return phase{}, err
	}
	return phase{d: d, lats: lats, cpu: c1.sub(c0), tail: cpuEnd(pids).sub(t0), io: io1.sub(io0)}, nil
}

// summary is what the rounds add up to.
type summary struct {
	directRate, gatewayRate float64 // messages per second over all rounds
	ratio                   float64 // gatewayRate / directRate
	median, lo, hi          float64 // the rounds' ratios
	directCPU, gatewayCPU   cpuUse  // over the timed windows, all rounds
	directTail, gatewayTail cpuUse  // after them
	directIO, gatewayIO     ioUse   // system calls over the timed windows
	// senderRatio is the library's CPU per message against the gateway
	// process's and its load client's: what the HTTP side costs, apart
	// from the server's and the database's work (the same for both).
	senderRatio float64
	lats        []time.Duration // sorted
}

func summarize(n int, rs []round) summary {
	var s summary
	var dt, gt time.Duration
	var ratios []float64
	for _, r := range rs {
		dt += r.direct.d
		gt += r.gateway.d
		ratios = append(ratios, r.direct.d.Seconds()/r.gateway.d.Seconds())
		s.directCPU, s.gatewayCPU = s.directCPU.add(r.direct.cpu), s.gatewayCPU.add(r.gateway.cpu)
		s.directTail, s.gatewayTail = s.directTail.add(r.direct.tail), s.gatewayTail.add(r.gateway.tail)
		s.directIO, s.gatewayIO = s.directIO.add(r.direct.io), s.gatewayIO.add(r.gateway.io)
		s.lats = append(s.lats, r.gateway.lats...)
	}
	total := float64(n * len(rs))
	s.directRate, s.gatewayRate = total/dt.Seconds(), total/gt.Seconds()
	s.ratio = dt.Seconds() / gt.Seconds()
	s.median, s.lo, s.hi = median(ratios), slices.Min(ratios), slices.Max(ratios)
	s.senderRatio = s.directCPU.self.Seconds() / (s.gatewayCPU.self + s.gatewayCPU.load).Seconds()
	slices.Sort(s.lats)
	return s
}

// pct returns the p-th quantile of the sorted latencies.
func pct(lats []time.Duration, p float64) time.Duration {
	return lats[min(len(lats)-1, int(p*float64(len(lats))))]
}

func (s summary) print(n, rounds int) {
	m := n * rounds
	fmt.Printf("throughput to DELIVERED_TO_SERVER over all rounds: direct %.0f msg/s, gateway %.0f msg/s, ratio %.2f; median of the rounds' ratios %.2f (%.2f–%.2f)\n",
		s.directRate, s.gatewayRate, s.ratio, s.median, s.lo, s.hi)
	fmt.Printf("  (advisory unless the machine was otherwise idle: on busy cores throughput follows the share the scheduler gives each side's processes)\n")
	fmt.Printf("CPU per message: direct %s; gateway %s\n", s.directCPU.perMsg(m), s.gatewayCPU.perMsg(m))
	fmt.Printf("  after the timed runs, until the recipient got them: direct %s; gateway %s\n", s.directTail.perMsg(m), s.gatewayTail.perMsg(m))
	fmt.Printf("  (self: the library alone, or the gateway with its account's client; load: the HTTP client process; recipient: its client's process)\n")
	fmt.Printf("sender CPU, library / (gateway process + load client): %.2f\n", s.senderRatio)
	fmt.Printf("system calls per message, read / write family: direct %s; gateway %s\n", s.directIO.perMsg(m), s.gatewayIO.perMsg(m))
	fmt.Printf("POST /v1/messages latency: p50 %s, p90 %s, p99 %s, max %s (%d requests)\n",
		pct(s.lats, .5).Round(10*time.Microsecond), pct(s.lats, .9).Round(10*time.Microsecond), pct(s.lats, .99).Round(10*time.Microsecond),
		s.lats[len(s.lats)-1].Round(10*time.Microsecond), len(s.lats))
}

// loadavg returns the first three fields of /proc/loadavg ("" elsewhere).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return "load average " + strings.Join(f[:3], " ")
}

// directFirst tells whether round r (from 0) runs the library directly
// before the gateway: with -order alternate, every other round starts with
// the gateway, so that neither side always runs first (after the other's
// run the machine is warmer, its heap larger).
func directFirst(order string, r int) bool {
	return order != "alternate" || r%2 == 0
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// arrivals counts the messages the recipient got. One goroutine at a time
// may wait.
type arrivals struct {
	mu   sync.Mutex
	n    int64
	want int64
	done chan struct{} // closed when n reaches want
}

func (a *arrivals) add() {
	a.mu.Lock()
	a.n++
	if a.done != nil && a.n >= a.want {
		close(a.done)
		a.done = nil
	}
	a.mu.Unlock()
}

func (a *arrivals) load() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// wait waits until the recipient got n messages in all; false after
// timeout. Only one goroutine may wait at a time.
func (a *arrivals) wait(n int64, timeout time.Duration) bool {
	a.mu.Lock()
	if a.n >= n {
		a.mu.Unlock()
		return true
	}
	done := make(chan struct{})
	a.want, a.done = n, done
	a.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		a.mu.Lock()
		a.done = nil
		a.mu.Unlock()
		return false
	}
}
