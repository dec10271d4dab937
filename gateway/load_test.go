package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
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
// IN_TRANSIT. A gateway that serializes its sends fails it after the
// minute the sends wait for one another (per variant). Under -race it
// peaks at about 5,000 goroutines.
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
			req, _ := http.NewRequest("POST", f.srv.URL+"/v1/messages", strings.NewReader(`{"to":"bob@example.org","body":"`+strconv.Itoa(i)+`"}`))
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
	// Each request's own message was sent, once: body i under ids[i].
	f.fake.mu.Lock()
	sent := slices.Clone(f.fake.sent)
	f.fake.mu.Unlock()
	if len(sent) != n {
		t.Errorf("%d sent, want %d", len(sent), n)
	}
	bodies := make(map[string]string, n) // body → id it was sent under
	for _, m := range sent {
		if _, dup := bodies[m.Body]; dup {
			t.Errorf("body %s sent twice", m.Body)
		}
		bodies[m.Body] = m.ID
	}
	for i, id := range ids {
		if got := bodies[strconv.Itoa(i)]; got != id {
			t.Errorf("POST %d answered %s, its message was sent as %q", i, id, got)
		}
	}
	// The whole feed, page by page: each message's IN_TRANSIT once.
	inTransit := make(map[string]int, n)
	var after Cursor
	for {
		var er eventsResponse
		_, _, b := f.do("GET", "/v1/events?after="+after.String()+"&limit=1000&wait=0s", "")
		mustJSON(t, b, &er)
		if len(er.Events) == 0 {
			break
		}
		for _, ev := range er.Events {
			if ev.State.String() == "IN_TRANSIT" {
				inTransit[ev.ID]++
			}
		}
		after = er.Cursor
	}
	if len(inTransit) != n {
		t.Errorf("the feed has the IN_TRANSIT of %d messages, want %d", len(inTransit), n)
	}
	for id, k := range inTransit {
		if !seen[id] || k != 1 {
			t.Errorf("the feed has %d IN_TRANSIT of %s (answered: %v)", k, id, seen[id])
		}
	}
	for i := 0; i < n; i += 97 {
		if st := f.status(ids[i]); st.ID != ids[i] || st.To != "bob@example.org" {
			t.Errorf("GET %s: %+v", ids[i], st)
		}
	}
}
