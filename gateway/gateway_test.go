package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/tracking"
)

func TestSendAndStatus(t *testing.T) { records(t, testSendAndStatus) }

func testSendAndStatus(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	r := f.send(`{"to":"bob@example.org","body":"hi","thread":"t1","window":"2m","channel":"ops"}`)
	if r.ID == "" || r.State.String() != "IN_TRANSIT" || r.Cursor == 0 {
		t.Fatalf("response %+v", r)
	}
	m := f.fake.sent[0]
	if m.ID != r.ID || m.To.String() != "bob@example.org" || m.Body != "hi" || m.Thread != "t1" || m.Window != 2*time.Minute {
		t.Fatalf("sent %+v", m)
	}
	tr := f.fake.tracker(r.ID)
	tr.Advance(tracking.DeliveredToServer, nil)
	tr.Advance(tracking.DeliveredToRecipient, &tracking.Response{From: jid.MustParse("bob@example.org/phone")})
	st := f.waitState(r.ID, tracking.DeliveredToRecipient)
	if st.To != "bob@example.org" || st.From != "alice@example.org" || st.Type != "chat" || st.Channel != "ops" || st.Settled {
		t.Fatalf("status %+v", st)
	}
	var names []string
	for _, c := range st.History {
		names = append(names, c.State.String())
	}
	if got := strings.Join(names, " "); got != "IN_TRANSIT DELIVERED_TO_SERVER DELIVERED_TO_RECIPIENT" {
		t.Fatalf("history %s", got)
	}
	if st.History[2].From != "bob@example.org/phone" || st.History[2].Cursor <= st.History[1].Cursor {
		t.Fatalf("evidence %+v", st.History[2])
	}
	tr.Advance(tracking.SeenByRecipient, nil)
	if st := f.waitState(r.ID, tracking.SeenByRecipient); !st.Settled {
		t.Fatal("SEEN_BY_RECIPIENT not settled")
	}
	if code, h, b := f.do("GET", "/v1/messages/nope", ""); code != 404 || problemOf(t, h, b).Type != ProblemTypePrefix+"not-found" {
		t.Fatalf("unknown id: %d %s", code, b)
	}
}

func TestErrorEvidence(t *testing.T) { records(t, testErrorEvidence) }

func testErrorEvidence(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	r := f.send(`{"to":"bob@example.org","body":"hi"}`)
	f.fake.tracker(r.ID).Advance(tracking.Error, &tracking.Response{Err: fmt.Errorf("wrapped: %w", errTest)})
	st := f.waitState(r.ID, tracking.Error)
	e := st.History[1].Error
	if e == nil || e.Condition != "undefined-condition" || !strings.Contains(e.Text, "test failure") {
		t.Fatalf("error evidence %+v", e)
	}
}

func TestIdempotency(t *testing.T) { records(t, testIdempotency) }

func testIdempotency(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	body := `{"to":"bob@example.org","body":"once"}`
	a := f.send(body, "Idempotency-Key", "k-1")
	code, h, b := f.do("POST", "/v1/messages", body, "Idempotency-Key", "k-1")
	if code != 202 || h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s", code, b)
	}
	var again sendResponse
	mustJSON(t, b, &again)
	if again.ID != a.ID || f.fake.count() != 1 {
		t.Fatalf("replay gave %s (first %s), %d sends", again.ID, a.ID, f.fake.count())
	}
	// Another request under the same key is refused and sends nothing.
	code, h, b = f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"twice"}`, "Idempotency-Key", "k-1")
	if code != 422 || problemOf(t, h, b).Type != ProblemTypePrefix+"idempotency-mismatch" || f.fake.count() != 1 {
		t.Fatalf("mismatch: %d %s", code, b)
	}
	// Keys belong to a token: another token's same key is a new message.
	req, _ := http.NewRequest("POST", f.srv.URL+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer other-token")
	req.Header.Set("Idempotency-Key", "k-1")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 || f.fake.count() != 2 {
		t.Fatalf("other token: %d, %d sends", resp.StatusCode, f.fake.count())
	}
}

// TestIdempotencyAfterPrune: the in-memory record keeps a key for 24 hours
// but its message only among the newest MaxMessages. A retry under a key
// whose message was dropped sends nothing: it is refused (410
// idempotency-gone, with the message's id), again and again.
func TestIdempotencyAfterPrune(t *testing.T) {
	f := newFixture(t, Config{MaxMessages: 8})
	body := `{"to":"bob@example.org","body":"pay invoice 42"}`
	first := f.send(body, "Idempotency-Key", "invoice-42")
	for i := range 8 {
		f.send(fmt.Sprintf(`{"to":"bob@example.org","body":"other %d"}`, i))
	}
	if code, _, _ := f.do("GET", "/v1/messages/"+first.ID, ""); code != 404 {
		t.Fatalf("the first message is still kept (%d): the test prunes nothing", code)
	}
	for range 2 {
		code, h, b := f.do("POST", "/v1/messages", body, "Idempotency-Key", "invoice-42")
		p := problemOf(t, h, b)
		if code != 410 || p.Type != ProblemTypePrefix+"idempotency-gone" || p.ID != first.ID || f.fake.count() != 9 {
			t.Fatalf("retry under the key: %d %s; %d sends", code, b, f.fake.count())
		}
	}
	// Another request under the key is still a mismatch.
	code, h, b := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"other"}`, "Idempotency-Key", "invoice-42")
	if code != 422 || problemOf(t, h, b).Type != ProblemTypePrefix+"idempotency-mismatch" {
		t.Fatalf("mismatch: %d %s", code, b)
	}
}

func TestWait(t *testing.T) { records(t, testWait) }

func testWait(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	f.fake.sentCh = make(chan string, 1)
	done := make(chan sendResponse)
	go func() {
		code, _, b := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","wait":"delivered","wait_timeout":"10s"}`)
		var r sendResponse
		json.Unmarshal(b, &r)
		if code != 200 {
			r.ID = fmt.Sprintf("status %d: %s", code, b)
		}
		done <- r
	}()
	id := <-f.fake.sentCh
	tr := f.fake.tracker(id)
	tr.Advance(tracking.DeliveredToServer, nil)
	tr.Advance(tracking.DeliveredToRecipient, nil)
	r := <-done
	if r.ID != id || r.State.String() != "DELIVERED_TO_RECIPIENT" || r.Reached == nil || !*r.Reached {
		t.Fatalf("wait returned %+v", r)
	}
	// A wait that ends first returns what was reached, with 202.
	code, _, b := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","wait":"seen","wait_timeout":"20ms"}`)
	<-f.fake.sentCh
	var r2 sendResponse
	mustJSON(t, b, &r2)
	if code != 202 || r2.State.String() != "IN_TRANSIT" || r2.Reached == nil || *r2.Reached {
		t.Fatalf("timed out wait: %d %s", code, b)
	}
	// A failure ends the wait at once.
	go func() {
		code, _, b := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","wait":"seen","wait_timeout":"10s"}`)
		var r sendResponse
		json.Unmarshal(b, &r)
		if code != 202 {
			r.ID = fmt.Sprintf("status %d: %s", code, b)
		}
		done <- r
	}()
	id = <-f.fake.sentCh
	f.fake.tracker(id).Advance(tracking.Aborted, nil)
	if r := <-done; r.State.String() != "ABORTED" || !r.Settled {
		t.Fatalf("aborted wait returned %+v", r)
	}
}

// TestCloseEndsWaits: Close ends a POST's wait as its timeout would, so
// that a server shut down after it (as examples/gateway does) answers the
// request: 202, not reached, with the id of the message that was sent and
// the state it is in, which is not the state at acceptance (with a store,
// that state is read after the request's context ended). A POST
// /v1/test's wait ends too (test-timeout, with the id and state).
func TestCloseEndsWaits(t *testing.T) { records(t, testCloseEndsWaits) }

func testCloseEndsWaits(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	f.fake.sentCh = make(chan string, 2)
	type answer struct {
		code int
		body []byte
	}
	post := func(path, body string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			code, _, b := f.do("POST", path, body)
			ch <- answer{code, b}
		}()
		return ch
	}
	msg := post("/v1/messages", `{"to":"bob@example.org","body":"hi","wait":"delivered","wait_timeout":"60s"}`)
	msgID := <-f.fake.sentCh
	test := post("/v1/test", `{"to":"bob@example.org","timeout":"60s"}`)
	testID := <-f.fake.sentCh
	// Past IN_TRANSIT, short of what they wait for: the answers say so.
	for _, id := range []string{msgID, testID} {
		f.fake.tracker(id).Advance(tracking.DeliveredToServer, nil)
		f.waitState(id, tracking.DeliveredToServer)
	}
	f.g.Close()
	for _, c := range []struct {
		ch   <-chan answer
		id   string
		code int
	}{{msg, msgID, 202}, {test, testID, 504}} {
		select {
		case a := <-c.ch:
			var r struct {
				ID      string `json:"id"`
				State   string `json:"state"`
				Reached *bool  `json:"reached"`
			}
			mustJSON(t, a.body, &r)
			if a.code != c.code || r.ID != c.id || r.State != "DELIVERED_TO_SERVER" || (c.code == 202 && (r.Reached == nil || *r.Reached)) {
				t.Errorf("answered %d %s, want %d for %s", a.code, a.body, c.code, c.id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Close left the wait for %s going", c.id)
		}
	}
}

// TestWaitEndedReadsState: a wait whose context ended (its wait_timeout,
// Close) answers the state the message is in, read under a context of its
// own: with a store, a read under the ended context fails, and the answer
// was the state at acceptance.
func TestWaitEndedReadsState(t *testing.T) { records(t, testWaitEndedReadsState) }

func testWaitEndedReadsState(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	f.fake.sentCh = make(chan string, 1)
	f.send(`{"to":"bob@example.org","body":"hi"}`)
	id := <-f.fake.sentCh
	f.fake.tracker(id).Advance(tracking.DeliveredToServer, nil)
	f.waitState(id, tracking.DeliveredToServer)
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	for target, want := range map[tracking.MessageState]bool{tracking.SeenByRecipient: false, tracking.DeliveredToServer: true} {
		st, reached := f.g.waitState(ctx, id, target)
		if st == nil || st.State.String() != "DELIVERED_TO_SERVER" || reached != want {
			t.Errorf("wait for %s with its context ended: %+v, reached %v; want DELIVERED_TO_SERVER, reached %v", target, st, reached, want)
		}
	}
}

func TestSendFailed(t *testing.T) { records(t, testSendFailed) }

func testSendFailed(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	f.fake.err = errTest
	code, h, b := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"hi"}`)
	p := problemOf(t, h, b)
	if code != 502 || p.Type != ProblemTypePrefix+"send-failed" || p.ID == "" || p.State != "ABORTED" {
		t.Fatalf("%d %s", code, b)
	}
	st := f.status(p.ID)
	if st.State.String() != "ABORTED" || st.History[1].Error == nil || st.History[1].Error.Condition != "send-failed" {
		t.Fatalf("status %+v", st)
	}
}

// TestFilteredFeedBounded: one read of the in-memory feed visits at most
// maxScan changes (under the record's lock), however few match its channel
// filter; GET /v1/events reads on from where it stopped, so that its
// answer is the same: the matching change, or an empty page at the head.
func TestFilteredFeedBounded(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := context.Background()
	for i := range 2*maxScan + 10 {
		f.g.rec.create(ctx, Status{ID: fmt.Sprint("filler-", i), To: "bob@example.org", Channel: "other",
			State: State(tracking.InTransit)}, "", [32]byte{})
	}
	ops := f.send(`{"to":"bob@example.org","body":"x","channel":"ops"}`)
	evs, next, err := f.g.rec.changes(ctx, 0, []string{"ops"}, 10)
	if err != nil || len(evs) != 0 || next != maxScan {
		t.Fatalf("one read: %d events, next %d, %v; want none, next %d", len(evs), next, err, maxScan)
	}
	for _, wait := range []string{"0s", "10s"} {
		var er eventsResponse
		_, _, b := f.do("GET", "/v1/events?after=0&channels=ops&wait="+wait, "")
		mustJSON(t, b, &er)
		if len(er.Events) != 1 || er.Events[0].ID != ops.ID || er.Cursor != ops.Cursor {
			t.Fatalf("wait %s: %s, want the change at %d", wait, b, ops.Cursor)
		}
	}
	var er eventsResponse
	_, _, b := f.do("GET", "/v1/events?after=0&channels=none&wait=0s", "")
	mustJSON(t, b, &er)
	if len(er.Events) != 0 || er.Cursor != ops.Cursor {
		t.Fatalf("no match: %s, want an empty page at %d", b, ops.Cursor)
	}
	// An unfiltered page is never cut short.
	_, _, b = f.do("GET", fmt.Sprintf("/v1/events?after=0&limit=%d&wait=0s", maxLimit), "")
	mustJSON(t, b, &er)
	if len(er.Events) != maxLimit {
		t.Fatalf("unfiltered: %d events", len(er.Events))
	}
}

func TestEventsLongPoll(t *testing.T) { records(t, testEventsLongPoll) }

func testEventsLongPoll(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	a := f.send(`{"to":"bob@example.org","body":"1","channel":"a"}`)
	b := f.send(`{"to":"bob@example.org","body":"2","channel":"b"}`)
	var er eventsResponse
	code, _, body := f.do("GET", "/v1/events?after=0", "")
	mustJSON(t, body, &er)
	if code != 200 || len(er.Events) != 2 || er.Events[0].ID != a.ID || er.Events[1].ID != b.ID || er.Cursor != b.Cursor {
		t.Fatalf("after=0: %d %s", code, body)
	}
	if e := er.Events[0]; e.State.String() != "IN_TRANSIT" || e.To != "bob@example.org" || e.Channel != "a" || e.At.IsZero() {
		t.Fatalf("event %+v", e)
	}
	_, _, body = f.do("GET", "/v1/events?after=0&channels=b", "")
	er = eventsResponse{}
	mustJSON(t, body, &er)
	if len(er.Events) != 1 || er.Events[0].ID != b.ID || er.Cursor != b.Cursor {
		t.Fatalf("channel filter: %s", body)
	}
	_, _, body = f.do("GET", "/v1/events?after=0&limit=1", "")
	er = eventsResponse{}
	mustJSON(t, body, &er)
	if len(er.Events) != 1 || er.Cursor != a.Cursor {
		t.Fatalf("limit: %s", body)
	}
	// Long-polling after the newest change waits for the next one.
	got := make(chan eventsResponse)
	go func() {
		_, _, body := f.do("GET", "/v1/events?wait=10s&after="+b.Cursor.String(), "")
		var er eventsResponse
		json.Unmarshal(body, &er)
		got <- er
	}()
	f.fake.tracker(a.ID).Advance(tracking.DeliveredToServer, nil)
	er = <-got
	if len(er.Events) != 1 || er.Events[0].ID != a.ID || er.Events[0].State.String() != "DELIVERED_TO_SERVER" {
		t.Fatalf("long poll: %+v", er)
	}
	// Without after: from now.
	code, _, body = f.do("GET", "/v1/events?wait=0s", "")
	er = eventsResponse{}
	mustJSON(t, body, &er)
	if code != 200 || len(er.Events) != 0 || er.Cursor != er0(f) {
		t.Fatalf("from now: %d %s", code, body)
	}
	// wait=0s answers at once.
	code, _, body = f.do("GET", "/v1/events?wait=0s", "")
	if code != 200 || !strings.Contains(string(body), `"events":[]`) {
		t.Fatalf("wait=0s: %d %s", code, body)
	}
}

func TestEventsSSE(t *testing.T) { records(t, testEventsSSE) }

func testEventsSSE(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	a := f.send(`{"to":"bob@example.org","body":"1"}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/v1/events?after=0", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() (id string, ev Event) {
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				mustJSON(t, []byte(line[6:]), &ev)
				return id, ev
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return
	}
	id, ev := next()
	if id != a.Cursor.String() || ev.ID != a.ID {
		t.Fatalf("first event id %s %+v", id, ev)
	}
	f.fake.tracker(a.ID).Advance(tracking.DeliveredToServer, nil)
	id2, ev := next()
	if ev.State.String() != "DELIVERED_TO_SERVER" || id2 != ev.Cursor.String() {
		t.Fatalf("second event %s %+v", id2, ev)
	}
	cancel()
	// Resuming with Last-Event-ID gives what came after it.
	f.fake.tracker(a.ID).Advance(tracking.DeliveredToRecipient, nil)
	f.waitState(a.ID, tracking.DeliveredToRecipient)
	req, _ = http.NewRequest("GET", f.srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", id)
	resp2, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	sc = bufio.NewScanner(resp2.Body)
	if _, ev := next(); ev.State.String() != "DELIVERED_TO_SERVER" {
		t.Fatalf("resumed at %+v", ev)
	}
	if _, ev := next(); ev.State.String() != "DELIVERED_TO_RECIPIENT" {
		t.Fatalf("then %+v", ev)
	}
}

func TestScheduleAndCancel(t *testing.T) { records(t, testScheduleAndCancel) }

func testScheduleAndCancel(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	f.fake.sentCh = make(chan string, 1)
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r := f.send(`{"to":"bob@example.org","body":"later","send_at":"` + at + `"}`)
	st := f.status(r.ID)
	if st.SendAt == nil || st.SendAt.Format(time.RFC3339) != at || f.fake.count() != 0 {
		t.Fatalf("scheduled: %+v, %d sends", st, f.fake.count())
	}
	code, _, b := f.do("DELETE", "/v1/messages/"+r.ID, "")
	var c sendResponse
	mustJSON(t, b, &c)
	if code != 200 || c.State.String() != "CLOSED" || !c.Settled {
		t.Fatalf("cancel: %d %s", code, b)
	}
	code, h, b := f.do("DELETE", "/v1/messages/"+r.ID, "")
	if code != 409 || problemOf(t, h, b).Type != ProblemTypePrefix+"not-cancellable" {
		t.Fatalf("second cancel: %d %s", code, b)
	}
	// A message due soon is sent by the scheduler; then it cannot be cancelled.
	soon := time.Now().Add(30 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	r = f.send(`{"to":"bob@example.org","body":"soon","send_at":"` + soon + `"}`)
	if id := <-f.fake.sentCh; id != r.ID {
		t.Fatalf("scheduler sent %s, want %s", id, r.ID)
	}
	if code, _, b := f.do("DELETE", "/v1/messages/"+r.ID, ""); code != 409 {
		t.Fatalf("cancel after send: %d %s", code, b)
	}
	if code, _, _ := f.do("DELETE", "/v1/messages/unknown", ""); code != 404 {
		t.Fatalf("cancel unknown: %d", code)
	}
}

func TestNotify(t *testing.T) { records(t, testNotify) }

func testNotify(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	code, _, b := f.do("POST", "/v1/notify", `{"to":"bob@example.org","title":"Disk <full>","body":"95%","priority":3}`)
	if code != 202 {
		t.Fatalf("%d %s", code, b)
	}
	m, p := f.fake.sent[0], f.fake.payloads[0]
	if m.Body != "95%" || m.Window != 24*time.Hour || !strings.Contains(p, "<subject>Disk &lt;full&gt;</subject>") || !strings.Contains(p, `<store xmlns="urn:xmpp:hints">`) {
		t.Fatalf("sent %+v payload %s", m, p)
	}
	f.do("POST", "/v1/notify", `{"to":"bob@example.org","title":"fyi","priority":0}`)
	m, p = f.fake.sent[1], f.fake.payloads[1]
	if m.Body != "fyi" || m.Window != time.Minute || !strings.Contains(p, "no-store") {
		t.Fatalf("low priority: %+v %s", m, p)
	}
}

func TestTestRoute(t *testing.T) { records(t, testTestRoute) }

func testTestRoute(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{}))
	f.fake.sentCh = make(chan string, 1)
	type result struct {
		code int
		body []byte
	}
	done := make(chan result)
	post := func(body string) {
		go func() {
			code, _, b := f.do("POST", "/v1/test", body)
			done <- result{code, b}
		}()
	}
	post(`{"to":"bob@example.org"}`)
	f.fake.tracker(<-f.fake.sentCh).Advance(tracking.DeliveredToRecipient, nil)
	r := <-done
	var tr testResponse
	mustJSON(t, r.body, &tr)
	if r.code != 200 || tr.State.String() != "DELIVERED_TO_RECIPIENT" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	post(`{"to":"bob@example.org"}`)
	f.fake.tracker(<-f.fake.sentCh).Advance(tracking.Error, &tracking.Response{Err: errTest})
	r = <-done
	if r.code != 502 || !strings.Contains(string(r.body), "test-failed") {
		t.Fatalf("error: %d %s", r.code, r.body)
	}
	post(`{"to":"bob@example.org","timeout":"20ms"}`)
	<-f.fake.sentCh
	r = <-done
	if r.code != 504 || !strings.Contains(string(r.body), "test-timeout") {
		t.Fatalf("timeout: %d %s", r.code, r.body)
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t, Config{})
	routes := [][2]string{
		{"GET", "/readyz"}, {"POST", "/v1/messages"}, {"GET", "/v1/messages/x"}, {"DELETE", "/v1/messages/x"},
		{"GET", "/v1/events"}, {"POST", "/v1/notify"}, {"POST", "/v1/test"}, {"GET", "/v1/openapi.json"},
		{"GET", "/metrics"}, {"GET", "/"}, {"GET", "/nope"},
	}
	for _, auth := range []string{"", "Bearer wrong", "Basic " + testToken, "Bearer " + testToken + "x", "Bearer"} {
		for _, rt := range routes {
			code, h, b := f.do(rt[0], rt[1], "", "Authorization", auth)
			if code != 401 || problemOf(t, h, b).Type != ProblemTypePrefix+"unauthorized" || h.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %q: %d %s", rt[0], rt[1], auth, code, b)
			}
		}
	}
	if code, _, _ := f.do("GET", "/healthz", "", "Authorization", ""); code != 200 {
		t.Errorf("healthz without token: %d", code)
	}
	// The cookie works for GET only.
	if code, _, b := f.do("GET", "/v1/events?wait=0s", "", "Authorization", "", "Cookie", cookieName+"="+base64.RawURLEncoding.EncodeToString([]byte(testToken))); code != 200 {
		t.Errorf("GET with cookie: %d %s", code, b)
	}
	if code, _, _ := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"x"}`, "Authorization", "", "Cookie", cookieName+"="+base64.RawURLEncoding.EncodeToString([]byte(testToken))); code != 401 || f.fake.count() != 0 {
		t.Errorf("POST with cookie only: %d", code)
	}
	// No CORS: a preflight gets nothing that would allow a cross-origin call.
	_, h, _ := f.do("OPTIONS", "/v1/messages", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS header %q", h.Get("Access-Control-Allow-Origin"))
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, Config{RateLimit: 0.001, Burst: 3})
	for i := range 3 {
		if code, _, _ := f.do("GET", "/v1/events?wait=0s", ""); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	code, h, b := f.do("GET", "/v1/events?wait=0s", "")
	if code != 429 || problemOf(t, h, b).Type != ProblemTypePrefix+"rate-limited" || h.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d %s", code, b)
	}
	// Another token has its own bucket.
	if code, _, _ := f.do("GET", "/v1/events?wait=0s", "", "Authorization", "Bearer other-token"); code != 200 {
		t.Fatalf("other token: %d", code)
	}
	// Guessing tokens is limited per address.
	for i := range 3 {
		if code, _, _ := f.do("GET", "/v1/events", "", "Authorization", fmt.Sprintf("Bearer guess-%d", i)); code != 401 {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	if code, _, _ := f.do("GET", "/v1/events", "", "Authorization", "Bearer guess-4"); code != 429 {
		t.Fatalf("guessing beyond the limit: %d", code)
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	found := make(chan struct{})
	buf := &logSink{match: "webhook failed", found: found}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFixture(t, Config{Logger: log, Webhooks: []Webhook{{URL: "http://user:pw-in-url@127.0.0.1:1/hook?key=qsecret", Secret: "hook-secret", MinBackoff: time.Millisecond}}})
	f.fake.err = fmt.Errorf("password rejected for %s", "alice")
	f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"x"}`)
	f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"x"}`, "Authorization", "Bearer wrong-token-value")
	<-found // the webhook failed at least once
	f.g.Close()
	out := buf.String()
	for _, s := range []string{testToken, "wrong-token-value", "hook-secret", "pw-in-url", "qsecret"} {
		if strings.Contains(out, s) {
			t.Errorf("log holds %q:\n%s", s, out)
		}
	}
}

func er0(f *fixture) Cursor {
	h, _ := f.g.rec.head(context.Background())
	return h
}

// logSink collects log output and tells when a line holds a string.
type logSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	match string
	found chan struct{}
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.found != nil && strings.Contains(string(p), l.match) {
		close(l.found)
		l.found = nil
	}
	return len(p), nil
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestReadyz(t *testing.T) {
	f := newFixture(t, Config{})
	if code, _, b := f.do("GET", "/readyz", ""); code != 200 {
		t.Fatalf("ready: %d %s", code, b)
	}
	f.fake.readyErr = errTest
	if code, _, b := f.do("GET", "/readyz", ""); code != 503 || !strings.Contains(string(b), "test failure") {
		t.Fatalf("not ready: %d %s", code, b)
	}
}

// TestSettledFollowsRecord: a tracker that settled before its changes were
// recorded does not make the record's state look settled.
func TestSettledFollowsRecord(t *testing.T) {
	f := newFixture(t, Config{})
	f.fake.mute = true
	r := f.send(`{"to":"bob@example.org","body":"hi"}`)
	f.fake.tracker(r.ID).Advance(tracking.SeenByRecipient, nil)
	if st := f.status(r.ID); st.State.String() != "IN_TRANSIT" || st.Settled {
		t.Fatalf("status %s settled=%v", st.State, st.Settled)
	}
}

// TestLoginCookie: the sign-in form sets a cookie that works for GET
// requests whatever characters the token has; a wrong token gets the form
// again.
func TestLoginCookie(t *testing.T) {
	const tok = `a token; with "quotes", commas and spaces`
	f := newFixture(t, Config{Tokens: []string{tok}})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(token string) *http.Response {
		resp, err := client.PostForm(f.srv.URL+"/login", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("wrong"); resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d %v", resp.StatusCode, resp.Cookies())
	}
	resp := post(tok)
	cs := resp.Cookies()
	if resp.StatusCode != 303 || len(cs) != 1 || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %d %+v", resp.StatusCode, cs)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/events?wait=0s", nil)
	req.AddCookie(cs[0])
	got, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got.Body.Close()
	if got.StatusCode != 200 {
		t.Fatalf("GET with the cookie: %d", got.StatusCode)
	}
}
