package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Config configures a Gateway. The zero value is usable, but a gateway
// without Tokens refuses every request but /healthz.
type Config struct {
	// Tokens are the API tokens accepted as "Authorization: Bearer <token>".
	Tokens []string
	// MaxBody limits request bodies. Zero means 64 KiB.
	MaxBody int64
	// RateLimit is the sustained number of requests per second allowed to
	// each token, and Burst how many may come at once. Zero means 100 per
	// second and a burst of 200; a negative RateLimit means no limit.
	RateLimit float64
	Burst     int
	// MaxWait bounds the wait and wait_timeout a request may ask for. Zero
	// means 60 s.
	MaxWait time.Duration
	// SendTimeout bounds how long a send may wait for the connection (while
	// the client reconnects, or the pending bound is reached), at most 1/30
	// longer: sends that start within that share one deadline. Zero means
	// 30 s.
	SendTimeout time.Duration
	// Webhooks receive every state change (see Webhook).
	Webhooks []Webhook
	// MaxMessages and MaxEvents bound what the in-memory record keeps: the
	// newest messages and changes. Zero means 200,000 and 1,000,000.
	MaxMessages, MaxEvents int
	// Store, if set, keeps the record (messages, their history, the feed,
	// idempotency keys, scheduled sends and webhook cursors), so that it
	// survives a restart and several gateways on one store serve one record.
	// Nil keeps it in memory. The gateway does not close it.
	Store store.Store
	// Logger receives problems at warn level and requests at debug level.
	// Tokens and passwords are never logged. Nil means silent.
	Logger *slog.Logger
}

// Gateway is the HTTP API. It is an http.Handler; create it with New, add
// accounts with AddAccount, and route each account client's
// Config.OnStateChange to Gateway.OnStateChange.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	tokens  tokenSet
	limit   *limiter
	rec     record
	handler http.Handler
	metrics *metrics
	sched   sendScheduler
	hooks   []*webhookWorker

	// accts is the accounts, read by every request without a lock;
	// AddAccount replaces it under mu.
	accts atomic.Pointer[accountSet]

	mu   sync.Mutex
	live map[string]*liveMsg // sent messages whose tracking may go on; fields written under mu

	sends sendCtxs

	closeOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	now func() time.Time
}

// New returns a gateway with no account yet.
func New(cfg Config) (*Gateway, error) {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 100
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(2*cfg.RateLimit))
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 30 * time.Second
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = 200_000
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 1_000_000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		cfg:    cfg,
		log:    log,
		tokens: newTokenSet(cfg.Tokens),
		live:   make(map[string]*liveMsg),
		now:    time.Now,
	}
	g.limit = newLimiter(cfg.RateLimit, cfg.Burst, time.Now)
	if cfg.Store != nil {
		g.rec = &storeRecord{s: cfg.Store, now: g.now}
	} else {
		g.rec = newMemRecord(cfg.MaxMessages, cfg.MaxEvents)
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.metrics = newMetrics(g)
	if cfg.Store != nil {
		g.sched = &jobScheduler{g: g, s: cfg.Store}
	} else {
		g.sched = newScheduler(g)
	}
	for _, h := range cfg.Webhooks {
		w, err := newWebhookWorker(g, h)
		if err != nil {
			return nil, err
		}
		g.hooks = append(g.hooks, w)
	}
	g.handler = g.authenticate(g.routes())
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.sched.run(g.ctx) }()
	go func() { defer g.wg.Done(); g.housekeeping(g.ctx) }()
	for _, w := range g.hooks {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); w.run(g.ctx) }()
	}
	return g, nil
}

// ServeHTTP serves the API.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.handler.ServeHTTP(w, r)
}

// Close stops the gateway's scheduler and webhook deliveries and ends
// long polls and event streams, and the waits of requests with "wait" (and
// of POST /v1/test) as their timeout would: a message accepted is answered
// 202 with "reached": false and its id, so that an http.Server's Shutdown
// after Close has no request left waiting. With a store, it gives up
// each webhook's claim (saving its cursor), waiting up to 5 s for the
// store. It does not close the accounts' clients.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.cancel()
		g.wg.Wait()
	})
	return nil
}

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", g.healthz)
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.HandleFunc("POST /v1/messages", g.postMessage)
	mux.HandleFunc("GET /v1/messages/{id}", g.getMessage)
	mux.HandleFunc("DELETE /v1/messages/{id}", g.deleteMessage)
	mux.HandleFunc("GET /v1/events", g.events)
	mux.HandleFunc("POST /v1/notify", g.notify)
	mux.HandleFunc("POST /v1/test", g.test)
	mux.HandleFunc("GET /v1/openapi.json", g.openapi)
	mux.Handle("GET /metrics", g.metrics.handler())
	mux.HandleFunc("GET /{$}", g.page)
	// Known paths with a wrong method, then everything else: problem
	// documents rather than the mux's plain text.
	notAllowed := func(allow string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeProblem(w, newProblem("method-not-allowed", r.Method+" is not allowed here"))
		}
	}
	mux.Handle("/v1/messages", notAllowed("POST"))
	mux.Handle("/v1/messages/{id}", notAllowed("GET, DELETE"))
	mux.Handle("/v1/events", notAllowed("GET"))
	mux.Handle("/v1/notify", notAllowed("POST"))
	mux.Handle("/v1/test", notAllowed("POST"))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem("not-found", r.URL.Path+" is not part of the API"))
	}))
	return mux
}

func (g *Gateway) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ok := true
	if err := g.rec.ping(ctx); err != nil {
		checks["store"] = err.Error()
		ok = false
	} else {
		checks["store"] = "ok"
	}
	accts := g.accounts().m
	if len(accts) == 0 {
		ok = false
		checks["xmpp"] = "no account"
	}
	for name, s := range accts {
		if err := s.ready(ctx); err != nil {
			checks[name] = err.Error()
			ok = false
		} else {
			checks[name] = "connected"
		}
	}
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "checks": checks})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// OnStateChange records a state change of a message sent through the
// gateway. Set it as xmpptrack.Config.OnStateChange of every account's
// client. Without Config.Store, changes of messages the gateway did not
// send are ignored.
//
// With Config.Store the account's client records its messages itself
// (xmpptrack.Config.Store set to the same store): OnStateChange then only
// counts the change in the metrics, and counts every change the client
// reports, so that the messages it takes back from the store after a
// restart are counted: those the application sent through the same client
// directly too (give such sends a client of their own to keep them out).
func (g *Gateway) OnStateChange(t *tracking.MessageTracker, from, to tracking.MessageState, resp *tracking.Response) {
	g.mu.Lock()
	var lm liveMsg
	p, ok := g.live[t.ID()]
	if ok {
		lm = *p
		if to.IsFinal() {
			delete(g.live, t.ID())
		}
	}
	g.mu.Unlock()
	if ok && lm.t != nil && lm.t != t {
		return // another message with the same id: not ours
	}
	if g.cfg.Store != nil {
		// A message re-loaded after a restart is counted without latency.
		g.metrics.observe(Event{ID: t.ID(), Change: Change{State: State(to), At: g.now()}}, lm.created)
		return
	}
	if !ok {
		return // not sent through the gateway
	}
	c := Change{State: State(to), At: g.now().UTC()}
	if resp != nil {
		c.Evidence = evidenceOf(resp)
	}
	if lm.room && to == tracking.SeenByRecipient {
		c.SeenBy = lm.s.seenBy(t)
	}
	ev, err := g.rec.change(g.ctx, t.ID(), c)
	if err != nil {
		g.log.Warn("gateway: recording a state change failed", "id", t.ID(), "state", to.String(), "err", err)
		return
	}
	g.metrics.observe(ev, lm.created)
}

// liveMsg is a message handed to a client, until its tracker settles.
type liveMsg struct {
	t       *tracking.MessageTracker
	s       sender
	room    bool
	created time.Time
	// cursor is the feed cursor of its creation, once its client recorded
	// it through ClientStore.
	cursor Cursor
	// settledSeen is set by the sweep that first found t settled.
	settledSeen bool
	// sends counts the sends of its id under way (concurrent requests
	// with one Idempotency-Key).
	sends int
}

func evidenceOf(resp *tracking.Response) Evidence {
	var e Evidence
	if !resp.From.Equal(jidZero) {
		e.From = resp.From.String()
	}
	e.StanzaID = resp.StanzaID
	if resp.Err != nil {
		info := &ErrorInfo{Condition: "undefined-condition", Text: resp.Err.Error()}
		var xs xstanza.Error
		if errors.As(resp.Err, &xs) {
			info.Condition = string(xs.Condition)
			info.Kind = string(xs.Type)
			info.Text = xs.Text[""]
			if info.Text == "" {
				info.Text = xs.Text["en"]
			}
		}
		e.Error = info
	}
	return e
}
