package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// receiver is a webhook endpoint that verifies signatures the way the
// Standard Webhooks specification describes, independently of Sign.
type receiver struct {
	t      *testing.T
	key    []byte
	failN  int // fail the first failN requests with 500
	failID string

	mu       sync.Mutex
	requests int
	got      []WebhookPayload
	ids      []string
	ch       chan WebhookPayload
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	mac := hmac.New(sha256.New, rc.key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		rc.t.Errorf("bad signature %q for id %q ts %q", sig, id, ts)
		w.WriteHeader(400)
		return
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		rc.t.Errorf("timestamp %q", ts)
	}
	rc.mu.Lock()
	rc.requests++
	fail := rc.requests <= rc.failN || (rc.failID != "" && id == rc.failID)
	rc.mu.Unlock()
	if fail {
		w.WriteHeader(500)
		return
	}
	var p WebhookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		rc.t.Errorf("payload %s: %v", body, err)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, p)
	rc.ids = append(rc.ids, id)
	rc.mu.Unlock()
	rc.ch <- p
}

func TestWebhooks(t *testing.T) { records(t, testWebhooks) }

func testWebhooks(t *testing.T, rc Config) {
	key := []byte("0123456789abcdef0123456789abcdef")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	all := &receiver{t: t, key: key, failN: 2, ch: make(chan WebhookPayload, 100)}
	ops := &receiver{t: t, key: key, ch: make(chan WebhookPayload, 100)}
	srvAll, srvOps := httptest.NewServer(all), httptest.NewServer(ops)
	defer srvAll.Close()
	defer srvOps.Close()
	f := newFixture(t, with(rc, Config{Webhooks: []Webhook{
		{URL: srvAll.URL, Secret: secret, MinBackoff: time.Millisecond},
		{URL: srvOps.URL, Secret: secret, Channels: []string{"ops"}, MinBackoff: time.Millisecond},
	}}))
	a := f.send(`{"to":"bob@example.org","body":"1","channel":"ops"}`)
	b := f.send(`{"to":"carol@example.org","body":"2"}`)
	ta, tb := f.fake.tracker(a.ID), f.fake.tracker(b.ID)
	ta.Advance(tracking.DeliveredToServer, nil)
	tb.Advance(tracking.DeliveredToServer, nil)
	ta.Advance(tracking.SeenByRecipient, nil)

	var seq []string
	for range 5 {
		p := <-all.ch
		if p.Type != "message.state" || p.Timestamp.IsZero() || !p.Timestamp.Equal(p.Data.At) {
			t.Fatalf("payload %+v", p)
		}
		seq = append(seq, map[string]string{a.ID: "a", b.ID: "b"}[p.Data.ID]+":"+p.Data.State.String())
	}
	// Delivered in feed order (so in order per message).
	var er eventsResponse
	_, _, body := f.do("GET", "/v1/events?after=0", "")
	mustJSON(t, body, &er)
	var feed []string
	for _, ev := range er.Events {
		feed = append(feed, map[string]string{a.ID: "a", b.ID: "b"}[ev.ID]+":"+ev.State.String())
	}
	if got, want := strings.Join(seq, " "), strings.Join(feed, " "); got != want {
		t.Fatalf("deliveries\n got %s\nfeed %s", got, want)
	}
	// The first change failed twice and was retried with the same id.
	all.mu.Lock()
	if all.requests != 7 || all.ids[0] != "evt_"+a.Cursor.String() {
		t.Errorf("%d requests, ids %v", all.requests, all.ids)
	}
	all.mu.Unlock()
	for _, st := range []string{"IN_TRANSIT", "DELIVERED_TO_SERVER", "SEEN_BY_RECIPIENT"} {
		if p := <-ops.ch; p.Data.ID != a.ID || p.Data.State.String() != st || p.Data.Channel != "ops" {
			t.Fatalf("ops hook got %+v, want %s of %s", p.Data, st, a.ID)
		}
	}
	// Metrics count deliveries and failures. The worker is sequential: once
	// a sixth change arrived, the fifth delivery was counted.
	f.send(`{"to":"dave@example.org","body":"3"}`)
	<-all.ch
	_, _, m := f.do("GET", "/metrics", "")
	if v := metricValue(t, m, `xmpptrack_gateway_webhook_deliveries_total{webhook="`+srvAll.URL+`"}`); v < 5 {
		t.Errorf("deliveries %v", v)
	}
	if v := metricValue(t, m, `xmpptrack_gateway_webhook_failures_total{webhook="`+srvAll.URL+`"}`); v != 2 {
		t.Errorf("failures %v", v)
	}
}

// TestWebhookGivesUp: a change the receiver keeps refusing is given up after
// RetryFor, and the following changes are still delivered.
func TestWebhookGivesUp(t *testing.T) {
	key := []byte("k")
	rc := &receiver{t: t, key: key, ch: make(chan WebhookPayload, 10)}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newFixture(t, Config{})
	// The hook starts at the feed's head: the first message is refused for good.
	head := er0(f)
	rc.failID = "evt_" + (head + 1).String()
	w, err := newWebhookWorker(f.g, Webhook{URL: srv.URL, Secret: "k", MinBackoff: time.Millisecond, RetryFor: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.g.wg.Add(1)
	go func() { defer f.g.wg.Done(); w.run(f.g.ctx) }()
	a := f.send(`{"to":"bob@example.org","body":"refused"}`)
	b := f.send(`{"to":"bob@example.org","body":"accepted"}`)
	if a.Cursor != head+1 {
		t.Fatalf("cursor %d", a.Cursor)
	}
	if p := <-rc.ch; p.Data.ID != b.ID {
		t.Fatalf("got %+v, want %s", p.Data, b.ID)
	}
}

func TestSign(t *testing.T) {
	// The Standard Webhooks specification's example.
	got := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestWebhookConfig(t *testing.T) {
	for _, h := range []Webhook{{URL: "ftp://x", Secret: "s"}, {URL: "http://x"}, {URL: "::", Secret: "s"}} {
		if _, err := New(Config{Webhooks: []Webhook{h}}); err == nil {
			t.Errorf("New accepted webhook %+v", h)
		}
	}
}

// metricValue returns the value of a series in Prometheus text output.
func metricValue(t *testing.T, text []byte, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in\n%s", series, text)
	return 0
}

// TestWebhookOutboxSurvivesRestart: with a store, changes that a gateway
// could not deliver before it stopped are delivered by the next gateway on
// the same store, from the saved cursor.
func TestWebhookOutboxSurvivesRestart(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rc := &receiver{t: t, key: []byte("k"), failN: 1 << 30, ch: make(chan WebhookPayload, 10)}
	failed := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.ServeHTTP(w, r)
		once.Do(func() { close(failed) })
	}))
	defer srv.Close()
	hook := Webhook{URL: srv.URL, Secret: "k", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	f := newFixture(t, Config{Store: st, Webhooks: []Webhook{hook}})
	a := f.send(`{"to":"bob@example.org","body":"1"}`)
	<-failed // the receiver refused it at least once
	f.g.Close()

	rc.mu.Lock()
	rc.failN = 0
	rc.requests = 1 << 30
	rc.mu.Unlock()
	g2, err := New(Config{Store: st, Tokens: []string{testToken}, Webhooks: []Webhook{hook}})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	select {
	case p := <-rc.ch:
		if p.Data.ID != a.ID || p.Data.State.String() != "IN_TRANSIT" {
			t.Fatalf("got %+v, want the IN_TRANSIT of %s", p.Data, a.ID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the change was never delivered after the restart")
	}
}

// TestWebhookStartsAtCreation: with a store, a webhook delivers the changes
// made after the gateway was created, even those made before its goroutine
// first ran.
func TestWebhookStartsAtCreation(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rc := &receiver{t: t, key: []byte("k"), ch: make(chan WebhookPayload, 10)}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newFixture(t, Config{Store: st})
	w, err := newWebhookWorker(f.g, Webhook{URL: srv.URL, Secret: "k", MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a := f.send(`{"to":"bob@example.org","body":"before the worker ran"}`)
	f.g.wg.Add(1)
	go func() { defer f.g.wg.Done(); w.run(f.g.ctx) }()
	select {
	case p := <-rc.ch:
		if p.Data.ID != a.ID {
			t.Fatalf("got %+v", p.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the change made before the worker ran was never delivered")
	}
}

// stopAfterHookClaim is a store on which a gateway stops (as if its process
// died) right after it claimed a webhook's key, before it creates the
// webhook's cursor job: the claim is stored, then the call blocks until the
// gateway closes.
type stopAfterHookClaim struct {
	store.Store
	claimed chan struct{}
}

func (s *stopAfterHookClaim) ClaimKey(ctx context.Context, k store.Key) (string, bool, error) {
	v, ok, err := s.Store.ClaimKey(ctx, k)
	if err != nil || k.Scope != hookScope {
		return v, ok, err
	}
	close(s.claimed)
	<-ctx.Done()
	return "", false, ctx.Err()
}

// TestWebhookOutboxGap: a gateway that stops between claiming a webhook's
// key and creating its cursor job leaves the next gateway on the store to
// create the job, from where the first one started: a change made through
// the first gateway (before the second existed) is delivered.
func TestWebhookOutboxGap(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rc := &receiver{t: t, key: []byte("k"), ch: make(chan WebhookPayload, 10)}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	hook := Webhook{URL: srv.URL, Secret: "k", MinBackoff: time.Millisecond}
	stop := &stopAfterHookClaim{Store: st, claimed: make(chan struct{})}
	f := newFixture(t, Config{Store: stop, Webhooks: []Webhook{hook}})
	<-stop.claimed
	a := f.send(`{"to":"bob@example.org","body":"sent while the outbox was half made"}`)
	f.g.Close()
	// The first gateway stopped between the two steps: a key, no job.
	sum := sha256.Sum256([]byte(srv.URL))
	name := hex.EncodeToString(sum[:8])
	if _, ok, err := st.Key(context.Background(), hookScope, name); !ok || err != nil {
		t.Fatalf("the webhook's key: %v %v", ok, err)
	}
	if js, err := st.ClaimJobs(context.Background(), hookScope+":"+name, time.Now(), time.Nanosecond, 1); len(js) != 0 || err != nil {
		t.Fatalf("the first gateway made the job: %+v %v", js, err)
	}

	g2, err := New(Config{Store: st, Tokens: []string{testToken}, Webhooks: []Webhook{hook}})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	select {
	case p := <-rc.ch:
		if p.Data.ID != a.ID || p.Data.State.String() != "IN_TRANSIT" {
			t.Fatalf("got %+v, want the IN_TRANSIT of %s", p.Data, a.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook never started after the restart")
	}
}

// TestWebhookRedirectFails: a receiver that answers a redirect did not take
// the change. Followed, a 301 turns the POST into a GET without the body,
// whose 200 would count the change as delivered; the gateway follows no
// redirect, even with a Client of its own that would, and retries the
// change.
func TestWebhookRedirectFails(t *testing.T) {
	for _, client := range []*http.Client{nil, {}} {
		var mu sync.Mutex
		var moved, landed int
		retried, followed := make(chan struct{}), make(chan struct{})
		mux := http.NewServeMux()
		mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			moved++
			if moved == 2 {
				close(retried)
			}
			mu.Unlock()
			http.Redirect(w, r, "/new", http.StatusMovedPermanently)
		})
		mux.HandleFunc("/new", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			landed++
			if landed == 1 {
				close(followed)
			}
			mu.Unlock()
		})
		srv := httptest.NewServer(mux)
		f := newFixture(t, Config{Webhooks: []Webhook{{URL: srv.URL + "/old", Secret: "k",
			Client: client, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}}})
		f.send(`{"to":"bob@example.org","body":"x"}`)
		select {
		case <-retried:
		case <-followed:
			t.Fatalf("client %v: the redirect was followed", client)
		case <-time.After(10 * time.Second):
			t.Fatal("the redirected change was never retried")
		}
		_, _, m := f.do("GET", "/metrics", "")
		if ok := `xmpptrack_gateway_webhook_deliveries_total{webhook="` + srv.URL + `/old"}`; strings.Contains(string(m), ok) {
			t.Errorf("client %v: changes counted as delivered: %v", client, metricValue(t, m, ok))
		}
		if v := metricValue(t, m, `xmpptrack_gateway_webhook_failures_total{webhook="`+srv.URL+`/old"}`); v < 1 {
			t.Errorf("client %v: %v failures counted", client, v)
		}
		f.g.Close()
		srv.Close()
	}
}

// lostClaimStore is the store of a gateway that loses its connection to
// the database: while down, saves of a webhook's cursor fail; the first
// claim of a webhook's job after that is reported on reclaim. The cursors
// saved are sent on saved, if it has room.
type lostClaimStore struct {
	store.Store
	down    atomic.Bool
	once    sync.Once
	reclaim chan struct{}
	saved   chan string
}

func (s *lostClaimStore) PutJob(ctx context.Context, j store.Job) error {
	if !strings.HasPrefix(j.Queue, hookScope) {
		return s.Store.PutJob(ctx, j)
	}
	if s.down.Load() {
		return errTest
	}
	err := s.Store.PutJob(ctx, j)
	if err == nil {
		select {
		case s.saved <- string(j.Data):
		default:
		}
	}
	return err
}

func (s *lostClaimStore) ClaimJobs(ctx context.Context, q string, now time.Time, lease time.Duration, n int) ([]store.Job, error) {
	if s.down.Load() && strings.HasPrefix(q, hookScope) {
		s.once.Do(func() { close(s.reclaim) })
	}
	return s.Store.ClaimJobs(ctx, q, now, lease, n)
}

// leaseEndedStore claims a webhook's job as a gateway does once the lease
// of the last save it could see ended (its clock is two leases on, which
// stands for waiting them out).
type leaseEndedStore struct{ store.Store }

func (s leaseEndedStore) ClaimJobs(ctx context.Context, q string, now time.Time, lease time.Duration, n int) ([]store.Job, error) {
	if strings.HasPrefix(q, hookScope) {
		now = now.Add(2 * hookLease)
	}
	return s.Store.ClaimJobs(ctx, q, now, lease, n)
}

// taggedTransport marks the requests of one gateway.
type taggedTransport string

func (t taggedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Test-Gateway", string(t))
	return http.DefaultTransport.RoundTrip(r)
}

// TestWebhookLostClaimStops: a gateway whose save of a webhook's cursor
// fails can no longer prove that it holds the webhook's claim (once its
// lease ends, another gateway may claim it): it stops delivering at once
// and claims the job again like any other gateway. Another gateway that
// claimed it meanwhile delivers from the cursor last saved, alone, even
// after the first one's store is back.
func TestWebhookLostClaimStops(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	type delivery struct{ gw, id string }
	got := make(chan delivery, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- delivery{r.Header.Get("X-Test-Gateway"), r.Header.Get("webhook-id")}
	}))
	defer srv.Close()
	hook := func(gw string) Webhook {
		return Webhook{URL: srv.URL, Secret: "k", MinBackoff: time.Millisecond,
			Client: &http.Client{Transport: taggedTransport(gw)}}
	}
	next := func(want delivery) {
		t.Helper()
		select {
		case d := <-got:
			if d != want {
				t.Fatalf("delivered %v, want %v", d, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v never delivered", want)
		}
	}
	ls := &lostClaimStore{Store: st, reclaim: make(chan struct{}), saved: make(chan string, 100)}
	a := newFixture(t, Config{Store: ls, Webhooks: []Webhook{hook("a")}})
	c1 := a.send(`{"to":"bob@example.org","body":"1"}`)
	next(delivery{"a", "evt_" + c1.Cursor.String()})
	for c := ""; c != c1.Cursor.String(); { // its cursor saved
		select {
		case c = <-ls.saved:
		case <-time.After(10 * time.Second):
			t.Fatal("the delivery was never saved")
		}
	}

	ls.down.Store(true)
	c2 := a.send(`{"to":"bob@example.org","body":"2"}`)
	next(delivery{"a", "evt_" + c2.Cursor.String()}) // delivered, but not saved
	select {
	case <-ls.reclaim:
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway whose save failed never went back to claiming the webhook")
	}
	ls.down.Store(false) // its database is back
	c3 := a.send(`{"to":"bob@example.org","body":"3"}`)

	b, err := New(Config{Store: leaseEndedStore{st}, Tokens: []string{testToken}, Webhooks: []Webhook{hook("b")}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	next(delivery{"b", "evt_" + c2.Cursor.String()}) // from the cursor saved last
	next(delivery{"b", "evt_" + c3.Cursor.String()})
	a.g.Close()
	b.Close()
	close(got)
	for d := range got {
		t.Errorf("also delivered: %v", d)
	}
}

// TestWebhookClaimRunsOut: a gateway counts on its claim only until
// hookMargin before its lease ends: past that, it neither saves nor
// releases (either would overwrite the claim of a gateway that took over).
func TestWebhookClaimRunsOut(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	o := &outbox{s: st, name: "n", now: func() time.Time { return now }, until: now.Add(hookLease)}
	if !o.holds() || o.save(context.Background(), 7) != nil {
		t.Fatal("a fresh claim does not hold")
	}
	saved := now
	now = now.Add(hookLease - hookMargin - time.Second) // past the claim, within the save's lease
	if !o.holds() {
		t.Fatal("the save did not renew the claim")
	}
	now = saved.Add(hookLease - hookMargin)
	if o.holds() || !errors.Is(o.save(context.Background(), 8), errClaimRanOut) {
		t.Fatal("a claim past its lease's end still holds")
	}
	o.release(9)
	js, err := st.ClaimJobs(context.Background(), o.queue(), now.Add(2*hookLease), hookLease, 1)
	if err != nil || len(js) != 1 || string(js[0].Data) != "7" {
		t.Fatalf("the job after the claim ran out: %+v %v (want the cursor 7 saved last)", js, err)
	}
}

// deadlineStore records when the context of each write of a webhook's
// cursor ends.
type deadlineStore struct {
	store.Store
	deadlines []time.Time
}

func (s *deadlineStore) PutJob(ctx context.Context, j store.Job) error {
	d, _ := ctx.Deadline()
	s.deadlines = append(s.deadlines, d)
	return s.Store.PutJob(ctx, j)
}

// TestWebhookReleaseBounded: the release of a webhook's claim at Close
// waits for the store at most releaseWait, and never past the claim's
// deadline: Close returns within that even when the store does not
// answer (it waits for the release), rather than holding on until the
// claim's deadline, up to 50 s away.
func TestWebhookReleaseBounded(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, left := range []time.Duration{hookLease, hookMargin + time.Second} {
		ds := &deadlineStore{Store: st}
		o := &outbox{s: ds, name: "n", now: time.Now, until: time.Now().Add(left)}
		end := o.deadline()
		o.release(7)
		after := time.Now()
		if len(ds.deadlines) != 1 {
			t.Fatalf("claim with %v left: %d writes at release, want 1", left, len(ds.deadlines))
		}
		if d := ds.deadlines[0]; d.IsZero() || d.Sub(after) > releaseWait || d.After(end) {
			t.Errorf("claim with %v left: the release waits for the store until %v after it returned, want at most %v and not past the claim's deadline",
				left, d.Sub(after).Round(time.Millisecond), releaseWait)
		}
	}
}

// closeInSaveStore is a store whose saves of a webhook's cursor (renewals:
// due a lease from now) block, once hang is set, until their context ends;
// saving is closed when the first one blocks. Other writes, the release
// among them, pass.
type closeInSaveStore struct {
	store.Store
	hang   atomic.Bool
	once   sync.Once
	saving chan struct{}
}

func (s *closeInSaveStore) PutJob(ctx context.Context, j store.Job) error {
	if strings.HasPrefix(j.Queue, hookScope) && s.hang.Load() && j.Due.After(time.Now().Add(hookMargin)) {
		s.once.Do(func() { close(s.saving) })
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Store.PutJob(ctx, j)
}

// TestWebhookCloseDuringSave: a save of the cursor that Close cuts short
// leaves the claim this gateway's, so Close still releases it, with the
// cursor of the change delivered: another gateway claims the webhook at
// once rather than after the one-minute lease.
func TestWebhookCloseDuringSave(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	cs := &closeInSaveStore{Store: st, saving: make(chan struct{})}
	f := newFixture(t, Config{Store: cs, Webhooks: []Webhook{{URL: srv.URL, Secret: "k"}}})
	cs.hang.Store(true)
	r := f.send(`{"to":"bob@example.org","body":"hi"}`)
	select {
	case <-cs.saving:
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery was never saved")
	}
	f.g.Close()
	js, err := st.ClaimJobs(context.Background(), f.g.hooks[0].out.queue(), time.Now(), hookLease, 1)
	if err != nil || len(js) != 1 || string(js[0].Data) != r.Cursor.String() {
		t.Fatalf("claiming the webhook after Close: %+v %v, want its job with the cursor %s (released)", js, err, r.Cursor)
	}
}

// TestWebhookAttemptCut: an attempt cut at the claim's deadline (a
// receiver that answers later than the claim lasts, with a client whose
// timeout is longer) is a failed attempt: counted, logged as what it is,
// and retried once the gateway claims the webhook again with RetryFor
// counted from the first attempt, so that a receiver that always hangs
// is given up on after RetryFor rather than retried for ever.
func TestWebhookAttemptCut(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		io.ReadAll(r.Body)   // then net/http sees the client go away
		<-r.Context().Done() // answers after any claim's end
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // before srv.Close: ends a request still hanging
	logs := &logSink{}
	f := newFixture(t, Config{Store: st, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	w, err := newWebhookWorker(f.g, Webhook{URL: srv.URL, Secret: "k", Client: &http.Client{}, RetryFor: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{ID: "m", To: "bob@example.org", Change: Change{State: State(tracking.InTransit), At: time.Now(), Cursor: 7}}
	deliver := func() bool {
		t.Helper()
		done := make(chan bool, 1)
		go func() { done <- w.deliver(ctx, ev) }()
		select {
		case ok := <-done:
			return ok
		case <-time.After(10 * time.Second):
			t.Fatal("the delivery hangs on")
			return false
		}
	}
	w.out.until = time.Now().Add(hookMargin + time.Second) // a claim with 1 s left
	if deliver() {
		t.Fatal("a change was given up or delivered after the claim ran out")
	}
	_, _, m := f.do("GET", "/metrics", "")
	if v := metricValue(t, m, `xmpptrack_gateway_webhook_failures_total{webhook="`+srv.URL+`"}`); v != 1 || requests.Load() != 1 {
		t.Errorf("%v failures counted for %d attempts, want 1 for 1", v, requests.Load())
	}
	if out := logs.String(); !strings.Contains(out, "webhook attempt cut") {
		t.Errorf("the cut attempt is not logged as such:\n%s", out)
	}
	w.out.until = time.Now().Add(hookLease) // claimed again
	if !deliver() {
		t.Fatal("a change retried past RetryFor, across claims, was not given up")
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d attempts, want 1: RetryFor had passed when the gateway claimed the webhook again", n)
	}
}
