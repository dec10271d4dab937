package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Webhook is an URL that receives every state change, signed the Standard
// Webhooks way.
type Webhook struct {
	// URL receives a POST per state change.
	URL string
	// Secret signs the requests. A secret "whsec_<base64>" (the Standard
	// Webhooks format) is the base64-decoded key; any other string is the
	// key's bytes. It must not be empty.
	Secret string
	// Channels limits the changes sent to messages of these channels.
	// Empty means all.
	Channels []string
	// Client sends the requests. Nil means a client with a 10 s timeout.
	// Redirects are never followed, whatever the client's CheckRedirect
	// (the gateway sends through a copy without it): a 3xx answer is a
	// failed attempt, retried like any other.
	Client *http.Client
	// RetryFor is how long one change is retried before it is given up.
	// Zero means 24 hours.
	RetryFor time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts, which
	// doubles after each failure. Zero means 1 s and 10 minutes.
	MinBackoff, MaxBackoff time.Duration
}

// WebhookPayload is the JSON body of a webhook request.
type WebhookPayload struct {
	// Type is "message.state".
	Type string `json:"type"`
	// Timestamp is the time of the change.
	Timestamp time.Time `json:"timestamp"`
	// Data is the change, as in GET /v1/events.
	Data Event `json:"data"`
}

// Sign returns the value of the webhook-signature header for a request with
// the given webhook-id, webhook-timestamp (Unix seconds) and body:
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>". Receivers compute the
// same to verify a request.
func Sign(secret, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secretKey(secret))
	fmt.Fprintf(mac, "%s.%d.", id, timestamp)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func secretKey(s string) []byte {
	if rest, ok := strings.CutPrefix(s, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil {
			return k
		}
	}
	return []byte(s)
}

// webhookWorker delivers the feed to one URL, in feed order (so in order per
// message), each change until it is accepted or RetryFor has passed.
type webhookWorker struct {
	g     *Gateway
	h     Webhook
	name  string // the URL without credentials or query, for logs and metrics
	after Cursor
	sleep func(ctx context.Context, d time.Duration) error
	out   *outbox // nil: the cursor lives in memory
	// retry is the change whose delivery stopped unfinished when the
	// claim was no longer certainly this gateway's: when it claims the
	// webhook again, the change's RetryFor and backoff go on from there.
	retry retryState
	// stopped says why follow last stopped, for the log.
	stopped string
}

type retryState struct {
	cursor  Cursor
	start   time.Time // zero: none
	backoff time.Duration
}

func newWebhookWorker(g *Gateway, h Webhook) (*webhookWorker, error) {
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gateway: webhook URL %q is not an http(s) URL", redactURL(h.URL))
	}
	if h.Secret == "" {
		return nil, errors.New("gateway: a webhook needs a secret")
	}
	if h.Client == nil {
		h.Client = &http.Client{Timeout: 10 * time.Second}
	}
	h.Client = noRedirects(h.Client)
	if h.RetryFor <= 0 {
		h.RetryFor = 24 * time.Hour
	}
	if h.MinBackoff <= 0 {
		h.MinBackoff = time.Second
	}
	if h.MaxBackoff <= 0 {
		h.MaxBackoff = 10 * time.Minute
	}
	head, err := g.rec.head(context.Background())
	if err != nil {
		return nil, err
	}
	w := &webhookWorker{g: g, h: h, name: redactURL(h.URL), after: head, sleep: sleepCtx}
	if g.cfg.Store != nil {
		sum := sha256.Sum256([]byte(h.URL))
		w.out = &outbox{s: g.cfg.Store, name: hex.EncodeToString(sum[:8]), now: g.now}
	}
	return w, nil
}

// noRedirects returns a copy of c that does not follow redirects. Followed,
// a 301, 302 or 303 turns the POST into a GET without the body, whose 2xx
// would count a change as delivered that the receiver never got; a 307 or
// 308 would send the signed change to another URL than the one configured.
// Unfollowed, a redirect is a status other than 2xx: a failed attempt.
func noRedirects(c *http.Client) *http.Client {
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// redactURL drops user info and query, which may hold credentials.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *webhookWorker) run(ctx context.Context) {
	if w.out == nil {
		w.follow(ctx)
		return
	}
	for {
		after, err := w.out.acquire(ctx, w)
		if err != nil {
			return
		}
		w.after = after
		w.stopped = "its claim ran out"
		w.follow(ctx)
		if ctx.Err() != nil {
			w.out.release(w.after)
			return
		}
		// The claim is no longer certainly ours: claim it again, as
		// another gateway would (see outbox).
		w.g.log.Warn("gateway: webhook stopped delivering until it claims the webhook again", "webhook", w.name, "reason", w.stopped)
	}
}

// checkpoint saves the cursor in the durable outbox (renewing its lease).
// It reports whether the worker may go on delivering: false once the
// outbox's claim is no longer certainly this gateway's.
func (w *webhookWorker) checkpoint(ctx context.Context) bool {
	if w.out == nil {
		return true
	}
	if err := w.out.save(ctx, w.after); err != nil {
		if ctx.Err() == nil {
			w.g.log.Debug("gateway: saving a webhook's cursor failed", "webhook", w.name, "err", err)
			if !errors.Is(err, errClaimRanOut) {
				w.stopped = "its claim could not be renewed"
			}
		}
		return false
	}
	return true
}

// holds reports whether the worker may deliver: always without a store,
// with one while it holds the webhook's claim.
func (w *webhookWorker) holds() bool { return w.out == nil || w.out.holds() }

// follow delivers the feed from w.after until ctx ends or, with a store,
// the claim is no longer certainly this gateway's.
func (w *webhookWorker) follow(ctx context.Context) {
	for ctx.Err() == nil {
		evs, next, err := w.g.rec.changes(ctx, w.after, w.h.Channels, 100)
		if errors.Is(err, errCursorExpired) {
			w.g.log.Warn("gateway: webhook fell behind the record; skipping to the oldest change kept", "webhook", w.name)
			w.after = 0
			continue
		}
		if err != nil {
			if w.sleep(ctx, w.h.MinBackoff) != nil {
				return
			}
			continue
		}
		for _, ev := range evs {
			if !w.deliver(ctx, ev) {
				return
			}
			w.after = ev.Cursor
			if !w.checkpoint(ctx) {
				return
			}
		}
		if w.after != next {
			w.after = next
			if !w.checkpoint(ctx) {
				return
			}
		}
		if len(evs) == 0 {
			wctx, cancel := context.WithTimeout(ctx, renewEvery)
			err := w.g.rec.wait(wctx, next)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil && !w.checkpoint(ctx) { // renew the lease while idle
				return
			}
		}
	}
}

// deliver sends one change until it is accepted or given up; it returns
// false only when ctx ended or the claim is no longer certainly this
// gateway's (the change is not delivered then). A change whose delivery
// stopped so is retried when the gateway claims the webhook again, from
// where it stopped: RetryFor counts from its first attempt in this
// process.
func (w *webhookWorker) deliver(ctx context.Context, ev Event) (ok bool) {
	body, _ := json.Marshal(WebhookPayload{Type: "message.state", Timestamp: ev.At, Data: ev})
	id := "evt_" + ev.Cursor.String()
	start := w.g.now()
	backoff := w.h.MinBackoff
	if r := w.retry; !r.start.IsZero() && r.cursor == ev.Cursor {
		start, backoff = r.start, r.backoff
		if w.g.now().Sub(start) > w.h.RetryFor {
			w.retry = retryState{}
			w.g.log.Warn("gateway: webhook gave up on a change", "webhook", w.name, "event", id, "err", "still failing after RetryFor, across claims")
			return true
		}
	}
	defer func() {
		if !ok {
			w.retry = retryState{cursor: ev.Cursor, start: start, backoff: backoff}
		} else if w.retry.cursor == ev.Cursor {
			w.retry = retryState{}
		}
	}()
	for {
		if !w.holds() {
			return false
		}
		err := w.attemptHeld(ctx, id, body)
		if err == nil {
			w.g.metrics.hookOK.WithLabelValues(w.name).Inc()
			return true // its save tells whether the claim still holds
		}
		if ctx.Err() != nil {
			return false
		}
		w.g.metrics.hookFail.WithLabelValues(w.name).Inc()
		if !w.holds() {
			// Cut at the claim's deadline (a receiver slower than the
			// claim's remaining time, with a client's timeout over
			// 30 s): a failed attempt, retried once the gateway claims
			// the webhook again (another gateway may take over).
			w.g.log.Warn("gateway: webhook attempt cut: the gateway's claim ran out during it; retrying once claimed again",
				"webhook", w.name, "event", id, "err", err)
			w.stopped = "an attempt outlasted its claim"
			return false
		}
		if w.g.now().Sub(start)+backoff > w.h.RetryFor {
			w.g.log.Warn("gateway: webhook gave up on a change", "webhook", w.name, "event", id, "err", err)
			return true
		}
		w.g.log.Debug("gateway: webhook failed, retrying", "webhook", w.name, "event", id, "in", backoff, "err", err)
		for left := backoff; left > 0; left -= renewEvery {
			if w.sleep(ctx, min(left, renewEvery)) != nil || !w.checkpoint(ctx) {
				return false
			}
		}
		backoff = min(2*backoff, w.h.MaxBackoff)
	}
}

// attemptHeld is attempt, cut when the claim, if any, is no longer
// certainly this gateway's.
func (w *webhookWorker) attemptHeld(ctx context.Context, id string, body []byte) error {
	if w.out == nil {
		return w.attempt(ctx, id, body)
	}
	actx, cancel := context.WithDeadline(ctx, w.out.deadline())
	defer cancel()
	return w.attempt(actx, id, body)
}

func (w *webhookWorker) attempt(ctx context.Context, id string, body []byte) error {
	ts := w.g.now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.h.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(w.h.Secret, id, ts, body))
	resp, err := w.h.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err // the URL may hold credentials
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 3 {
		return fmt.Errorf("status %d, a redirect to %s (not followed)", resp.StatusCode, redactURL(resp.Header.Get("Location")))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
