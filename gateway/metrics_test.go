package gateway

import (
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/tracking"
)

func TestMetrics(t *testing.T) { records(t, testMetrics) }

func testMetrics(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	a := f.send(`{"to":"bob@example.org","body":"1"}`)
	b := f.send(`{"to":"bob@example.org","body":"2"}`)
	ta := f.fake.tracker(a.ID)
	ta.Advance(tracking.DeliveredToServer, nil)
	ta.Advance(tracking.SeenByRecipient, nil)
	f.waitState(a.ID, tracking.SeenByRecipient)
	f.fake.tracker(b.ID).Advance(tracking.DeliveredToServer, nil)
	f.waitState(b.ID, tracking.DeliveredToServer)
	// The record shows a change before the callback that recorded it
	// counted it in the metrics (with a store, the client records it
	// before the callback runs): wait for the three callbacks.
	f.fake.waitHanded(t, 3)

	code, h, m := f.do("GET", "/metrics", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %s", code, h.Get("Content-Type"))
	}
	for series, want := range map[string]float64{
		`xmpptrack_gateway_messages_total{state="IN_TRANSIT"}`:               2,
		`xmpptrack_gateway_messages_total{state="DELIVERED_TO_SERVER"}`:      2,
		`xmpptrack_gateway_messages_total{state="SEEN_BY_RECIPIENT"}`:        1,
		`xmpptrack_gateway_state_seconds_count{state="DELIVERED_TO_SERVER"}`: 2,
		`xmpptrack_gateway_state_seconds_count{state="SEEN_BY_RECIPIENT"}`:   1,
		`xmpptrack_gateway_pending`:                                          1,
		`xmpptrack_gateway_connected{account="alice@example.org"}`:           1,
		`xmpptrack_gateway_reconnections_total{account="alice@example.org"}`: 0,
		`xmpptrack_gateway_resumptions_total{account="alice@example.org"}`:   0,
	} {
		if got := metricValue(t, m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	f.fake.readyErr = errTest
	_, _, m = f.do("GET", "/metrics", "")
	if got := metricValue(t, m, `xmpptrack_gateway_connected{account="alice@example.org"}`); got != 0 {
		t.Errorf("connected = %v while down", got)
	}
}
