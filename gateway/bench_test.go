package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkPostMessage measures POST /v1/messages over loopback HTTP with an
// account that costs nothing: the HTTP layer's own ceiling (the client's
// cost included, as it runs in the same process).
func BenchmarkPostMessage(b *testing.B) {
	f := newFixture(b, Config{})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}}
	body := `{"to":"bob@example.org","body":"benchmark message"}`
	b.SetParallelism(100)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", f.srv.URL+"/v1/messages", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 202 {
				b.Fatal(resp.StatusCode)
			}
		}
	})
}
