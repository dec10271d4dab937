package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentPosts: 1,000 POST /v1/messages at once, each on a
// keep-alive connection of its own, all in the gateway at the same time
// (the account's send waits until every one of them reached it, so the
// gateway holds no lock across a send): every one is accepted with an id of
// its own, each message is recorded once, and the feed has each one's
// IN_TRANSIT.
func TestConcurrentPosts(t *testing.T) { records(t, testConcurrentPosts) }

func testConcurrentPosts(t *testing.T, rc Config) {
	const n = 1000
	f := newFixture(t, with(rc, Config{}))
	var arrived atomic.Int64
	all := make(chan struct{})
	// If the requests are not all in flight at once, the sends give up
	// waiting for one another after a minute (and the test fails).
	giveUp := make(chan struct{})
	var gaveUp atomic.Bool
	timer := time.AfterFunc(time.Minute, func() { close(giveUp) })
	defer timer.Stop()
	f.fake.beforeSend = func() {
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-giveUp:
			gaveUp.Store(true)
		}
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	defer hc.CloseIdleConnections()
	ids := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", f.srv.URL+"/v1/messages", strings.NewReader(fmt.Sprintf(`{"to":"bob@example.org","body":"%d"}`, i)))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				errs <- fmt.Errorf("POST %d: %d %s", i, resp.StatusCode, b)
				return
			}
			var r sendResponse
			if err := json.Unmarshal(b, &r); err != nil || r.ID == "" {
				errs <- fmt.Errorf("POST %d: %s %v", i, b, err)
				return
			}
			ids[i] = r.ID
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if gaveUp.Load() {
		t.Fatalf("the %d sends were never in flight at once", n)
	}
	if t.Failed() {
		return
	}
	seen := make(map[string]bool, n)
	for i, id := range ids {
		if seen[id] {
			t.Fatalf("POST %d answered id %s twice", i, id)
		}
		seen[id] = true
	}
	if c := f.fake.count(); c != n {
		t.Errorf("%d sent, want %d", c, n)
	}
	var er eventsResponse
	_, _, b := f.do("GET", "/v1/events?after=0&limit=1000&wait=0s", "")
	mustJSON(t, b, &er)
	feed := 0
	for _, ev := range er.Events {
		if seen[ev.ID] && ev.State.String() == "IN_TRANSIT" {
			feed++
			delete(seen, ev.ID)
		}
	}
	if feed != n {
		t.Errorf("the feed has the IN_TRANSIT of %d messages, want %d", feed, n)
	}
	for i := 0; i < n; i += 97 {
		if st := f.status(ids[i]); st.ID != ids[i] || st.To != "bob@example.org" {
			t.Errorf("GET %s: %+v", ids[i], st)
		}
	}
}
