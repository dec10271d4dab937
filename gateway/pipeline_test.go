package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPipelinedPosts: POSTs pipelined on one HTTP/1.1 connection (written
// back to back in one write, before any answer) are each answered, in
// their order, as if sent one by one: each message sent once, in the
// order of the requests; a bad request among them refused without
// touching the others; the same Idempotency-Key again (the way a client
// that pipelines POSTs recovers from a broken connection) replays the
// first one's id and sends nothing.
func TestPipelinedPosts(t *testing.T) { records(t, testPipelinedPosts) }

func testPipelinedPosts(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	post := func(body, key string) string {
		h := "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testToken + "\r\nContent-Type: application/json\r\n"
		if key != "" {
			h += "Idempotency-Key: " + key + "\r\n"
		}
		return h + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	}
	msg := func(i int) string { return fmt.Sprintf(`{"to":"bob@example.org","body":"m%d"}`, i) }
	type want struct {
		status int
		body   string // the message it sent ("" for none)
		sameAs int    // replays the id of this request (-1: none)
	}
	reqs := []string{post(msg(0), ""), post(msg(1), "k1"), post(`{"to":"bob@example.org","body":`, ""),
		post(msg(3), ""), post(msg(1), "k1"), post(msg(5), "k5"), post(msg(6), "")}
	wants := []want{{202, "m0", -1}, {202, "m1", -1}, {400, "", -1}, {202, "m3", -1}, {200, "", 1}, {202, "m5", -1}, {202, "m6", -1}}

	c, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	ids := make([]string, len(reqs))
	for i, w := range wants {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		status := resp.StatusCode
		if status == http.StatusAccepted && resp.Header.Get("Idempotent-Replayed") == "true" {
			status = http.StatusOK // a replay, whatever its status
		}
		if status != w.status {
			t.Fatalf("answer %d: %d %s (replayed %q), want %d", i, resp.StatusCode, b, resp.Header.Get("Idempotent-Replayed"), w.status)
		}
		if w.status == http.StatusBadRequest {
			continue
		}
		var r sendResponse
		mustJSON(t, b, &r)
		ids[i] = r.ID
		if w.sameAs >= 0 && r.ID != ids[w.sameAs] {
			t.Errorf("answer %d: id %s, want the id of request %d, %s", i, r.ID, w.sameAs, ids[w.sameAs])
		}
	}
	var sent []string
	for _, w := range wants {
		if w.body != "" {
			sent = append(sent, w.body)
		}
	}
	f.fake.mu.Lock()
	defer f.fake.mu.Unlock()
	if len(f.fake.sent) != len(sent) {
		t.Fatalf("%d messages sent, want %d", len(f.fake.sent), len(sent))
	}
	k := 0
	for i, w := range wants {
		if w.body == "" {
			continue
		}
		if m := f.fake.sent[k]; m.Body != w.body || m.ID != ids[i] {
			t.Errorf("message %d sent: %s %q, want %s %q (request %d)", k, m.ID, m.Body, ids[i], w.body, i)
		}
		k++
	}
}
