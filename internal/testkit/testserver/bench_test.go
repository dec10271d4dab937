package testserver

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkLaunch measures start-up (port accepting, accounts created) and
// reports stop time separately. Run with -benchtime=5x: each op is a server.
func BenchmarkLaunch(b *testing.B) {
	for _, kind := range Kinds() {
		for _, n := range []int{2, 20} {
			b.Run(fmt.Sprintf("%s/accounts=%d", kind, n), func(b *testing.B) {
				if err := Available(kind); err != nil {
					b.Skip(err)
				}
				accounts := make([]string, n)
				for i := range accounts {
					accounts[i] = fmt.Sprintf("user%d", i)
				}
				b.ReportAllocs()
				var stopping time.Duration
				for b.Loop() {
					s, err := Launch(b.Context(), kind, Options{Accounts: accounts})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					began := time.Now()
					if err := s.Stop(); err != nil {
						b.Fatal(err)
					}
					stopping += time.Since(began)
					b.StartTimer()
				}
				b.ReportMetric(float64(stopping.Milliseconds())/float64(b.N), "stop-ms/op")
			})
		}
	}
}
