package gateway

import (
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// metrics are the gateway's Prometheus metrics, in a registry of its own (no
// global state): GET /metrics serves them.
type metrics struct {
	reg      *prometheus.Registry
	states   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	hookOK   *prometheus.CounterVec
	hookFail *prometheus.CounterVec
	// byState holds each state's counter and histogram, looked up once:
	// observe runs for every change and a label lookup hashes the name.
	byState [tracking.Error + 1]stateMetrics

	mu       sync.Mutex
	accounts map[string]sender
}

type stateMetrics struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// health is an account's connection as the metrics show it.
type health struct {
	connected                  bool
	reconnections, resumptions int
}

var (
	descConnected = prometheus.NewDesc("xmpptrack_gateway_connected",
		"1 when the account's XMPP connection is up, else 0.", []string{"account"}, nil)
	descReconnections = prometheus.NewDesc("xmpptrack_gateway_reconnections_total",
		"Connections made after the first.", []string{"account"}, nil)
	descResumptions = prometheus.NewDesc("xmpptrack_gateway_resumptions_total",
		"Reconnections that resumed the XEP-0198 stream.", []string{"account"}, nil)
	descPending = prometheus.NewDesc("xmpptrack_gateway_pending",
		"Messages sent through the gateway whose tracking has not ended.", nil, nil)
)

func newMetrics(g *Gateway) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		states: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmpptrack_gateway_messages_total",
			Help: "Messages that reached each state (a message counts once per state it reached).",
		}, []string{"state"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xmpptrack_gateway_state_seconds",
			Help:    "Time from accepting a message to each state it reached.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
		}, []string{"state"}),
		hookOK: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmpptrack_gateway_webhook_deliveries_total",
			Help: "Webhook requests answered with a 2xx status.",
		}, []string{"webhook"}),
		hookFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmpptrack_gateway_webhook_failures_total",
			Help: "Webhook requests that failed (network error or non-2xx status); each retry counts.",
		}, []string{"webhook"}),
		accounts: make(map[string]sender),
	}
	m.reg.MustRegister(m.states, m.latency, m.hookOK, m.hookFail, &collector{g: g, m: m})
	for st := range m.byState {
		name := tracking.MessageState(st).String()
		m.byState[st] = stateMetrics{count: m.states.WithLabelValues(name), latency: m.latency.WithLabelValues(name)}
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) addAccount(name string, s sender) {
	m.mu.Lock()
	m.accounts[name] = s
	m.mu.Unlock()
}

// observe counts a recorded change; created is when the message was accepted.
func (m *metrics) observe(ev Event, created time.Time) {
	if int(ev.State) < 0 || int(ev.State) >= len(m.byState) {
		return
	}
	sm := &m.byState[ev.State]
	sm.count.Inc()
	if !created.IsZero() {
		sm.latency.Observe(max(0, ev.At.Sub(created).Seconds()))
	}
}

// collector reports what is read at scrape time: pending messages and the
// accounts' connections.
type collector struct {
	g *Gateway
	m *metrics
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConnected
	ch <- descReconnections
	ch <- descResumptions
	ch <- descPending
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(c.g.pending()))
	c.m.mu.Lock()
	names := make([]string, 0, len(c.m.accounts))
	for n := range c.m.accounts {
		names = append(names, n)
	}
	sort.Strings(names)
	accts := make([]sender, len(names))
	for i, n := range names {
		accts[i] = c.m.accounts[n]
	}
	c.m.mu.Unlock()
	for i, s := range accts {
		h := s.health()
		up := 0.0
		if h.connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, up, names[i])
		ch <- prometheus.MustNewConstMetric(descReconnections, prometheus.CounterValue, float64(h.reconnections), names[i])
		ch <- prometheus.MustNewConstMetric(descResumptions, prometheus.CounterValue, float64(h.resumptions), names[i])
	}
}

// pending counts live messages whose tracking has not ended.
func (g *Gateway) pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, lm := range g.live {
		if lm.t == nil || !lm.t.Settled() {
			n++
		}
	}
	return n
}
