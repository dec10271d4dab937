package gateway

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestSendCtx: sends that start together share one context, whose
// deadline is Config.SendTimeout away, at most 1/30 more, and which ends
// when the gateway closes.
func TestSendCtx(t *testing.T) {
	const timeout = 300 * time.Hour // its 1/30, 10 h, outlasts the test
	g, err := New(Config{Tokens: []string{testToken}, SendTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	ctx := g.sendCtx()
	after := time.Now()
	end, ok := ctx.Deadline()
	if !ok || end.Before(before.Add(timeout)) || end.After(after.Add(timeout+timeout/30)) {
		t.Errorf("deadline %v after %v, want %v to %v", end.Sub(before), ok, timeout, timeout+timeout/30)
	}
	if g.sendCtx() != ctx {
		t.Error("a send started at once got another context")
	}
	g.Close()
	select {
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("ended with %v", ctx.Err())
		}
	default:
		t.Error("the send context outlived the gateway")
	}
}

// TestSendCtxRenews: a send starting more than the slack (1/30 of
// Config.SendTimeout) after the shared context was made gets a new one;
// the contexts whose deadline passed are released (cancelled and
// forgotten) when the next one is made, and the others are kept.
func TestSendCtxRenews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 30 * time.Second
		const slack = timeout / 30
		g, err := New(Config{Tokens: []string{testToken}, SendTimeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		first := g.sendCtx()
		time.Sleep(slack)
		if g.sendCtx() != first {
			t.Fatal("a send started within the slack got another context")
		}
		time.Sleep(time.Nanosecond)
		second := g.sendCtx()
		if second == first {
			t.Fatal("a send started after the slack got the old context")
		}
		if d1, _ := first.Deadline(); func() bool { d2, _ := second.Deadline(); return !d2.After(d1) }() {
			t.Error("the new context does not end later than the old one")
		}
		if first.Err() != nil || len(g.sends.made) != 2 {
			t.Fatalf("before its deadline: the first context ended (%v) or was forgotten (%d kept, want 2)",
				first.Err(), len(g.sends.made))
		}
		// Past the first context's deadline (and within the second's).
		time.Sleep(timeout)
		third := g.sendCtx()
		if !errors.Is(first.Err(), context.DeadlineExceeded) {
			t.Errorf("the first context past its deadline: %v", first.Err())
		}
		if second.Err() != nil || third.Err() != nil {
			t.Fatalf("contexts within their deadline ended: %v, %v", second.Err(), third.Err())
		}
		g.sends.mu.Lock()
		kept := make([]context.Context, 0, len(g.sends.made))
		for _, d := range g.sends.made {
			kept = append(kept, d.ctx)
		}
		g.sends.mu.Unlock()
		if len(kept) != 2 || kept[0] != second || kept[1] != third {
			t.Fatalf("kept %d contexts, want the second and the third: the expired one was not released", len(kept))
		}
	})
}
