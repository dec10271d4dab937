package xmpptrack

import (
	"encoding/xml"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestTapHoldsCallbacks: once the connection's read hook runs (readIdle),
// the state changes that stanzas read together prove reach the callbacks
// when the reader asks for more input, with one wake-up; before it (a
// connection without the hook, direct TLS) each goes at once. Either way
// every change reaches its callback, in order.
func TestTapHoldsCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTapClient(t, Config{NoReceipts: true, NoMarkers: true})
		var calls atomic.Int64
		var order []string
		receipt := func(ids ...string) *strings.Reader {
			var b strings.Builder
			b.WriteString(`<stream xmlns='jabber:client'>`)
			for _, id := range ids {
				fmt.Fprintf(&b, `<message from='bob@example.org/pc' type='chat' id='a-%s'><received xmlns='urn:xmpp:receipts' id='%s'/></message>`, id, id)
			}
			b.WriteString(`</stream>`)
			return strings.NewReader(b.String())
		}
		trackCounted := func(id string) {
			tr := track(t, c, "bob@example.org", id)
			tr.OnStateChange(func(_, to tracking.MessageState, _ *tracking.Response) {
				order = append(order, id+">"+to.String())
				calls.Add(1)
			})
		}
		for _, id := range []string{"m0", "m1", "m2", "m3"} {
			trackCounted(id)
		}

		// No hook yet: each change goes at once.
		feedTap(t, c, nil, receipt("m0"))
		synctest.Wait()
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d callbacks without the read hook, want 1", n)
		}

		c.readIdle() // the connection's first read
		feedTap(t, c, nil, receipt("m1", "m2"))
		synctest.Wait()
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d callbacks before the reader asked for more, want 1", n)
		}
		c.readIdle()
		synctest.Wait()
		if n := calls.Load(); n != 3 {
			t.Fatalf("%d callbacks after the reader asked for more, want 3", n)
		}

		feedTap(t, c, nil, receipt("m3"))
		c.readIdle()
		synctest.Wait()
		want := "m0>DELIVERED_TO_RECIPIENT m1>DELIVERED_TO_RECIPIENT m2>DELIVERED_TO_RECIPIENT m3>DELIVERED_TO_RECIPIENT"
		if got := strings.Join(order, " "); got != want {
			t.Errorf("callbacks %s, want %s", got, want)
		}
	})
}

// TestEventsIdleBeforeWait: the reader waiting for room for the
// application's stanzas first releases what it held (events.idle).
func TestEventsIdleBeforeWait(t *testing.T) {
	e := newEvents()
	e.waiting = func() bool { return false }
	var idle int
	e.idle = func() { idle++ }
	for range maxQueuedStanzas {
		if !e.pushStanza(func() {}, nil) {
			t.Fatal("pushStanza refused below the bound")
		}
	}
	if idle != 0 {
		t.Fatalf("idle called %d times below the bound", idle)
	}
	cancel := make(chan struct{})
	close(cancel)
	if e.pushStanza(func() {}, cancel) {
		t.Fatal("pushStanza queued past the bound")
	}
	if idle != 1 {
		t.Errorf("idle called %d times before waiting, want 1", idle)
	}
}

// TestHoldReleasedForIQHandler: a receipt read together with an IQ request
// for Config.Handler reaches its callback while the reader waits for the
// Handler's answer, not after the linger tick (the Handler here waits for
// that callback).
func TestHoldReleasedForIQHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		called := make(chan struct{}, 2)
		var waited time.Duration
		h := xmpp.HandlerFunc(func(_ xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local == "iq" {
				t0 := time.Now()
				<-called
				waited = time.Since(t0)
			}
			return nil
		})
		c := newTapClient(t, Config{NoReceipts: true, NoMarkers: true})
		for _, id := range []string{"m0", "m1"} {
			track(t, c, "bob@example.org", id).OnStateChange(func(tracking.MessageState, tracking.MessageState, *tracking.Response) {
				called <- struct{}{}
			})
		}
		receipt := func(id string) string {
			return fmt.Sprintf(`<message from='bob@example.org/pc' type='chat' id='a-%s'><received xmlns='urn:xmpp:receipts' id='%s'/></message>`, id, id)
		}
		feedTap(t, c, nil, strings.NewReader(`<stream xmlns='jabber:client'>`+receipt("m0")+`</stream>`))
		<-called // the callback goroutine ran and waits for more
		c.readIdle()
		feedTap(t, c, h, strings.NewReader(`<stream xmlns='jabber:client'>`+receipt("m1")+
			`<iq type='get' id='v1' from='bob@example.org/pc'><query xmlns='jabber:iq:version'/></iq></stream>`))
		if waited != 0 {
			t.Errorf("the Handler waited %v for the callback of a receipt read before the IQ", waited)
		}
	})
}
