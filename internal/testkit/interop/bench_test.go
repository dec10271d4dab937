package interop

import (
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// BenchmarkAioxmppTracking runs the aioxmpp sender benchmark (500 tracked
// messages per iteration) against a slixmpp responder on Prosody without
// MAM. ns/op includes the Python start-up and log-in; the per-message
// metrics come from the Python side.
func BenchmarkAioxmppTracking(b *testing.B) {
	requirePeer(b, Aioxmpp)
	requirePeer(b, Slixmpp)
	srv := testserver.Start(b, testserver.Prosody, testserver.Options{Accounts: []string{"bench", "peer"}, NoMAM: true})
	p := StartSlixmpp(b, Options{Addr: srv.Addr(), JID: srv.JID("peer").String(), Password: srv.Password("peer")})
	const n = 500
	b.ReportAllocs()
	var sum BenchResult
	b.ResetTimer()
	for range b.N {
		res, err := RunAioxmppBench(b.Context(), BenchOptions{
			Addr: srv.Addr(), JID: srv.JID("bench").String(), Password: srv.Password("bench"),
			To: p.JID(), Count: n, Timeout: time.Minute,
		})
		if err != nil {
			b.Fatal(err)
		}
		sum.ToServer.All += res.ToServer.All
		sum.ToRecipient.All += res.ToRecipient.All
		sum.Seen.All += res.Seen.All
		sum.CPU += res.CPU
		sum.PeakRSS = max(sum.PeakRSS, res.PeakRSS)
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*n) }
	b.ReportMetric(per(sum.ToServer.All), "server-ns/msg")
	b.ReportMetric(per(sum.ToRecipient.All), "recipient-ns/msg")
	b.ReportMetric(per(sum.Seen.All), "seen-ns/msg")
	b.ReportMetric(per(sum.CPU), "py-cpu-ns/msg")
	b.ReportMetric(float64(sum.PeakRSS)/(1<<20), "py-peak-rss-MiB")
}
