package gateway

import (
	"context"
	"errors"
	"testing"
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
