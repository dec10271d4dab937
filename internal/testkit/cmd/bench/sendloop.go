package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// sendPattern is how the tracked sender calls Send (the -send-goroutines
// and -send-rate flags): the same for the in-memory and the stored
// clients of one run, so that their ratio compares like with like.
type sendPattern struct {
	// goroutines call Send at once, sharing the messages (1: one after
	// the other, each Send returning before the next begins). A gateway
	// or a busy bot sends from many goroutines; a store commits what
	// they hand it together, one transaction per group.
	goroutines int
	// rate paces the sends in messages per second, over all goroutines
	// (0: as fast as Send returns). Paced, each Send's latency is
	// recorded.
	rate float64
	// ownIDs gives every message an id of xmpptrack.NewID (16
	// characters, as plain mellium's in this bench) instead of the
	// registry's.
	ownIDs bool
}

// sendOutcome is what sendAll measured.
type sendOutcome struct {
	latencies []time.Duration // of every Send, when paced
	err       error
}

// sendAll sends n messages to to through clients (message i through
// clients[i%len]), following p. tracked receives each tracker.
func sendAll(ctx context.Context, clients []*xmpptrack.Client, to jid.JID, n int, p sendPattern,
	tracked func(i int, t *tracking.MessageTracker)) sendOutcome {
	g := max(p.goroutines, 1)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var lat [][]time.Duration
	if p.rate > 0 {
		lat = make([][]time.Duration, g)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range g {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				if p.rate > 0 {
					// Message i leaves at start + i/rate: an open loop, so
					// that a slow Send does not lower the offered rate.
					at := start.Add(time.Duration(float64(i) / p.rate * float64(time.Second)))
					if d := time.Until(at); d > 0 {
						time.Sleep(d)
					}
				}
				t0 := time.Now()
				t, err := clients[i%len(clients)].Send(ctx, p.message(to, i))
				if err != nil {
					err = fmt.Errorf("send %d: %w", i, err)
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				if lat != nil {
					lat[w] = append(lat[w], time.Since(t0))
				}
				if tracked != nil {
					tracked(i, t)
				}
			}
		})
	}
	wg.Wait()
	var out sendOutcome
	if e := firstErr.Load(); e != nil {
		out.err = *e
	}
	for _, l := range lat {
		out.latencies = append(out.latencies, l...)
	}
	return out
}

// message is the i-th message to to: with an id of xmpptrack.NewID if
// p.ownIDs, else without one (the registry makes it).
func (p sendPattern) message(to jid.JID, i int) xmpptrack.Message {
	m := xmpptrack.Message{To: to, Body: body(i)}
	if p.ownIDs {
		m.ID = xmpptrack.NewID()
	}
	return m
}

// fillLatency sets the Send latency quantiles of res from l.
func fillLatency(res *result, l []time.Duration) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	q := func(f float64) float64 { return l[min(int(f*float64(len(l))), len(l)-1)].Seconds() }
	res.SendP50, res.SendP99, res.SendMax = q(0.5), q(0.99), l[len(l)-1].Seconds()
}

// args are the child's flags for p.
func (p sendPattern) args() []string {
	return []string{"-goroutines", strconv.Itoa(max(p.goroutines, 1)), "-rate", strconv.FormatFloat(p.rate, 'f', -1, 64)}
}
