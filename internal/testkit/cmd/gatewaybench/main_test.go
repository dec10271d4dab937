package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestArrivals: wait returns once the recipient's count reaches the number
// asked for, whether it got there before or while waiting, and reports a
// count that never comes.
func TestArrivals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a arrivals
		a.add()
		if !a.wait(1, time.Minute) {
			t.Fatal("wait(1) after one arrival: false")
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for range 500 {
				a.add()
			}
		})
		if !a.wait(501, time.Minute) {
			t.Fatalf("wait(501): false with %d arrived", a.load())
		}
		wg.Wait()
		if a.wait(502, time.Minute) {
			t.Fatal("wait(502) with 501 arrived: true")
		}
		a.add() // after a wait that gave up: no close of a stale channel
		if got := a.load(); got != 502 {
			t.Fatalf("load %d, want 502", got)
		}
	})
}

// TestCounterFailures: a message that failed ends the wait like one the
// server acknowledged, but makes the run an error.
func TestCounterFailures(t *testing.T) {
	for _, to := range []tracking.MessageState{tracking.Aborted, tracking.TimedOut, tracking.Closed, tracking.Error} {
		var c counter
		c.reset(2)
		c.onChange(nil, tracking.InTransit, tracking.DeliveredToServer, nil)
		c.onChange(nil, tracking.DeliveredToServer, tracking.DeliveredToRecipient, nil) // not a second one
		c.onChange(nil, tracking.InTransit, to, nil)
		if err := waitCount(&c); err == nil {
			t.Errorf("a message %s: no error", to)
		}
	}
	var c counter
	c.reset(2)
	c.onChange(nil, tracking.InTransit, tracking.DeliveredToServer, nil)
	c.onChange(nil, tracking.InTransit, tracking.SeenByRecipient, nil)
	if err := waitCount(&c); err != nil {
		t.Errorf("two acknowledged: %v", err)
	}
}

// TestSummarize: the ratios are the gateway's throughput over the
// library's (over all rounds, and per round), and the sender CPU ratio
// puts the library's own CPU against the gateway process's and its load
// client's, leaving out the server's, the database's and the recipient's.
func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	rs := []round{
		{directFirst: true,
			direct:  phase{d: 1000 * ms, cpu: cpuUse{self: 100 * ms, server: 500 * ms, recipient: 90 * ms}, tail: cpuUse{server: 10 * ms}},
			gateway: phase{d: 2000 * ms, cpu: cpuUse{self: 300 * ms, server: 400 * ms, load: 100 * ms, recipient: 90 * ms}, lats: []time.Duration{3 * ms, 1 * ms}}},
		{directFirst: false,
			direct:  phase{d: 1000 * ms, cpu: cpuUse{self: 100 * ms, server: 500 * ms, db: 50 * ms}, io: ioUse{selfR: 1, selfW: 2}},
			gateway: phase{d: 1000 * ms, cpu: cpuUse{self: 300 * ms, server: 400 * ms, load: 100 * ms, db: 50 * ms}, lats: []time.Duration{2 * ms}}},
	}
	s := summarize(1000, rs)
	if s.directRate != 1000 || s.gatewayRate != 2000.0/3 {
		t.Errorf("rates %v, %v, want 1000, 666.7", s.directRate, s.gatewayRate)
	}
	if s.ratio != 2.0/3 || s.median != 0.75 || s.lo != 0.5 || s.hi != 1 {
		t.Errorf("ratio %v, median %v (%v–%v), want 0.67, 0.75 (0.5–1)", s.ratio, s.median, s.lo, s.hi)
	}
	if s.senderRatio != 0.25 {
		t.Errorf("sender CPU ratio %v, want 200 ms / (600 + 200) = 0.25", s.senderRatio)
	}
	if s.directCPU.self != 200*ms || s.gatewayCPU.load != 200*ms || s.directTail.server != 10*ms {
		t.Errorf("CPU sums %+v %+v tail %+v", s.directCPU, s.gatewayCPU, s.directTail)
	}
	if s.directIO != (ioUse{selfR: 1, selfW: 2}) || s.gatewayIO != (ioUse{}) {
		t.Errorf("system call sums %+v %+v", s.directIO, s.gatewayIO)
	}
	if !slices.Equal(s.lats, []time.Duration{1 * ms, 2 * ms, 3 * ms}) {
		t.Errorf("latencies %v, want sorted 1 2 3 ms", s.lats)
	}
	if p := pct(s.lats, .5); p != 2*ms {
		t.Errorf("p50 %v, want 2ms", p)
	}
}

// TestDirectFirst: with -order alternate, the rounds take turns at which
// side runs first; with direct-first the library always does.
func TestDirectFirst(t *testing.T) {
	for r, want := range []bool{true, false, true, false} {
		if got := directFirst("alternate", r); got != want {
			t.Errorf("alternate, round %d: directFirst %v", r, got)
		}
		if !directFirst("direct-first", r) {
			t.Errorf("direct-first, round %d: gateway first", r)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{0.9, 0.6, 0.7}, 0.7}, {[]float64{1, 0.5, 0.75, 0.25}, 0.625}} {
		if got := median(c.v); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestRecipientWait: the parent asks the recipient's process for a count
// and reads its answer: reached, or not with the count it got.
func TestRecipientWait(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() { // the child's side of the protocol
		in := bufio.NewScanner(inR)
		for in.Scan() {
			switch in.Text() {
			case "10":
				fmt.Fprintln(outW, "ok")
			default:
				fmt.Fprintln(outW, "timeout 10")
			}
		}
		outW.Close()
	}()
	r := &recipient{&child{name: "recipient", in: inW, out: bufio.NewReader(outR)}}
	if ok, got, err := r.wait(10); !ok || got != 10 || err != nil {
		t.Errorf("wait(10): %v %d %v", ok, got, err)
	}
	if ok, got, err := r.wait(12); ok || got != 10 || err != nil {
		t.Errorf("wait(12) with 10 arrived: %v %d %v", ok, got, err)
	}
	inW.Close()
	if _, _, err := r.wait(13); err == nil {
		t.Error("wait after the child ended: no error")
	}
}

// TestIOPerMsg formats system calls per message.
func TestIOPerMsg(t *testing.T) {
	if got := (ioUse{selfR: 30, selfW: 15, loadR: 10, loadW: 10}).perMsg(10); got != "self 3.00 / 1.50 (load client 1.00 / 1.00)" {
		t.Errorf("perMsg %q", got)
	}
}
