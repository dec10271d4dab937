package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestStateChangeCallbackSends has Config.OnStateChange send 100 messages,
// each waiting for one of MaxPending = 10 slots, while the peer answers
// every message with a receipt and a displayed marker. The callback's Send
// calls must all return: the evidence that frees a slot is read and applied
// while the callback waits, and its changes stay under the callback queue's
// limit (1024 + 4*MaxPending).
func TestStateChangeCallbackSends(t *testing.T) {
	const n = 100
	bob := jid.MustParse("bob@example.org")
	ctx := waitCtx(t)
	var c *Client
	ready := make(chan struct{})
	result := make(chan error, 1)
	started := false
	c, pc := newPeer(t, Config{MaxPending: 10, OnStateChange: func(*tracking.MessageTracker, tracking.MessageState, tracking.MessageState, *tracking.Response) {
		if started {
			return
		}
		started = true
		<-ready
		for i := range n {
			if _, err := c.Send(ctx, Message{To: bob, Body: fmt.Sprint("from the callback ", i)}); err != nil {
				result <- fmt.Errorf("send %d from the callback: %w", i, err)
				return
			}
		}
		result <- nil
	}})
	close(ready)
	go func() { // bob: a receipt and a displayed marker for every message
		for {
			select {
			case e := <-pc.in:
				if e.XMLName.Local != "message" {
					continue
				}
				id := e.attr("id")
				pc.send(`<message from='bob@example.org/pc' id='r-%s'>%s</message>`, id, receiptFor(id))
				pc.send(`<message from='bob@example.org/pc' id='d-%s'><displayed xmlns='%s' id='%s'/></message>`, id, stanza.NSMarkers, id)
			case <-pc.done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	if _, err := c.Send(ctx, Message{To: bob, Body: "first"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-result:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatalf("the callback's sends did not finish: %v (pending %d)", ctx.Err(), c.reg.Pending())
	}
	if err := c.reg.Shutdown(context.WithoutCancel(ctx)); err != nil {
		t.Fatal(err)
	}
}

// TestStuckStateChangeCallbackMemory measures a Config.OnStateChange that
// never returns while the application keeps sending (MaxPending = 10, up to
// 200,000 messages, each answered by the peer with a receipt and a marker):
// Send stops taking messages once the callback lags by the queue limit, and
// the heap stays flat. It logs the numbers; the bound is checked on the
// queue, not on timing.
func TestStuckStateChangeCallbackMemory(t *testing.T) {
	const sends = 200_000
	bob := jid.MustParse("bob@example.org")
	ctx := waitCtx(t)
	release := make(chan struct{})
	c, pc := newPeer(t, Config{MaxPending: 10, OnStateChange: func(*tracking.MessageTracker, tracking.MessageState, tracking.MessageState, *tracking.Response) {
		<-release
	}})
	defer close(release)
	go func() {
		for {
			select {
			case e := <-pc.in:
				if e.XMLName.Local == "message" {
					id := e.attr("id")
					pc.send(`<message from='bob@example.org/pc' id='r-%s'>%s</message>`, id, receiptFor(id))
					pc.send(`<message from='bob@example.org/pc' id='d-%s'><displayed xmlns='%s' id='%s'/></message>`, id, stanza.NSMarkers, id)
				}
			case <-pc.done:
				return
			}
		}
	}()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	var pending []*tracking.MessageTracker
	admitted := 0
	for admitted < sends {
		tr, err := c.TrySend(ctx, Message{To: bob, Body: "alert"})
		if err == nil {
			admitted++
			pending = append(pending, tr)
			continue
		}
		if !errors.Is(err, tracking.ErrTooManyPending) {
			t.Fatal(err)
		}
		if q, limit := c.reg.Queued(); q >= limit {
			break // Send waits from here on, as long as the callback is stuck
		}
		// A slot is taken: wait for the oldest message's evidence.
		select {
		case <-pending[0].Done():
		case <-ctx.Done():
			t.Fatalf("no slot freed: %v", ctx.Err())
		}
		pending = pending[1:]
		if admitted%64 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	runtime.ReadMemStats(&ms)
	peak = max(peak, ms.HeapAlloc)
	q, limit := c.reg.Queued()
	t.Logf("stuck OnStateChange, MaxPending 10: %d of %d sends taken before Send waits; %d changes queued (limit %d); heap peak %d KiB above the start",
		admitted, sends, q, limit, (int64(peak)-int64(base))/1024)
	if admitted == sends {
		t.Fatal("every send was taken while the callback was stuck")
	}
	if _, most := registry.QueueLimit(10); q > most {
		t.Fatalf("%d changes queued, bound %d", q, most)
	}
}
