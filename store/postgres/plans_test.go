package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// plans collects the plans that auto_explain sends as notices.
type plans struct {
	mu  sync.Mutex
	all []string
}

func (p *plans) notice(_ *pgconn.PgConn, n *pgconn.Notice) {
	if strings.HasPrefix(n.Message, "duration:") {
		p.mu.Lock()
		p.all = append(p.all, n.Message)
		p.mu.Unlock()
	}
}

func (p *plans) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := p.all
	p.all = nil
	return all
}

// grown are the tables that grow with the messages: a sequential scan of
// one on a hot path costs more at every commit. (Sessions, owners, keys
// and jobs grow with instances and requests, not here.)
var grown = map[string]bool{"xmpptrack_messages": true, "xmpptrack_changes": true}

// seqScans returns the grown tables that a plan (auto_explain's JSON)
// scans sequentially.
func seqScans(t *testing.T, notice string) (query string, tables []string) {
	t.Helper()
	i := strings.Index(notice, "{")
	if i < 0 {
		t.Fatalf("not a JSON plan: %s", notice)
	}
	var doc struct {
		Query string         `json:"Query Text"`
		Plan  map[string]any `json:"Plan"`
	}
	if err := json.Unmarshal([]byte(notice[i:]), &doc); err != nil {
		t.Fatalf("plan %s: %v", notice, err)
	}
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if n["Node Type"] == "Seq Scan" {
			if rel, _ := n["Relation Name"].(string); grown[rel] {
				tables = append(tables, rel)
			}
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			if m, ok := k.(map[string]any); ok {
				walk(m)
			}
		}
	}
	walk(doc.Plan)
	return doc.Query, tables
}

// TestHotQueryPlans is a guard against plan regressions: on a database of
// some thousands of messages (analyzed, as autovacuum does), every
// statement of the commit path, the reads and pruning is run with its plan
// logged (auto_explain, nested statements included, so those of
// xmpptrack_commit too), and none may scan a table that grows with the
// messages (messages, changes) sequentially.
func TestHotQueryPlans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := database(t, fmt.Sprintf("plans_%d", time.Now().UnixNano()))
	s, err := OpenConfig(ctx, dsn, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	owners := []store.Instance{{Account: "a@example.org", Resource: "r1"}, {Account: "a@example.org", Resource: "r2"}}
	// As in a store in use: most messages settled within the retention,
	// a few pending, the oldest due for pruning.
	const n = 20000
	now := time.Now()
	for k := 0; k < n; k += 500 {
		b := &store.Batch{}
		for i := k; i < k+500; i++ {
			at := now.Add(-time.Duration(n-i) * 10 * time.Second)
			if i < 200 {
				at = now.Add(-30 * 24 * time.Hour)
			}
			m := msg(fmt.Sprintf("p%05d", i))
			m.Owner = owners[i%2]
			m.Channel = fmt.Sprintf("ch%d", i%7)
			m.Created = at
			m.Deadline = at.Add(time.Hour)
			b.Messages = append(b.Messages, m)
			b.Written = append(b.Written, store.Written{ID: m.ID, Seq: uint32(i)})
			b.Changes = append(b.Changes, store.Change{ID: m.ID, State: tracking.DeliveredToServer, At: at})
			if i%50 != 0 { // one in 50 stays pending
				b.Changes = append(b.Changes, store.Change{ID: m.ID, State: tracking.DeliveredToRecipient, At: at},
					store.Change{ID: m.ID, State: tracking.SeenByRecipient, At: at})
			}
		}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}

	var p plans
	e, err := OpenConfig(ctx, dsn, Config{Retention: -1, tune: func(c *pgxpool.Config) {
		for k, v := range map[string]string{"session_preload_libraries": "auto_explain",
			"auto_explain.log_min_duration": "0", "auto_explain.log_nested_statements": "on",
			"auto_explain.log_format": "json", "auto_explain.log_level": "notice", "client_min_messages": "notice"} {
			c.ConnConfig.RuntimeParams[k] = v
		}
		c.ConnConfig.OnNotice = p.notice
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p.take() // Open's own statements
	check := func(what string, run func() error) {
		t.Helper()
		if err := run(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := p.take()
		if len(got) == 0 {
			t.Fatalf("%s: no plan logged", what)
		}
		for _, notice := range got {
			if q, tables := seqScans(t, notice); len(tables) > 0 {
				t.Errorf("%s: sequential scan of %v in\n%s\nplan: %s", what, tables, strings.TrimSpace(q), notice)
			}
		}
	}
	check("commit", func() error {
		m := msg("new1")
		m.Owner = owners[0]
		return e.Commit(ctx, &store.Batch{Messages: []store.Message{m},
			Written: []store.Written{{ID: "new1", Seq: 9}, {ID: "p19950", Seq: 10}},
			Changes: []store.Change{{ID: "new1", State: tracking.DeliveredToServer}, {ID: "p19950", State: tracking.DeliveredToRecipient},
				{ID: "p19900", State: tracking.SeenByRecipient}},
			Sessions: []store.Session{{Owner: owners[0], JID: "a@example.org/r1", ID: "sm1", Inbound: 3, Outbound: 10, Acked: 9}}})
	})
	check("Message", func() error { _, err := e.Message(ctx, "p00100"); return err })
	check("Pending", func() error {
		return e.Pending(ctx, owners[1], func(store.Message) error { return nil })
	})
	check("Session", func() error { _, err := e.Session(ctx, owners[0]); return err })
	last, err := e.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.take()
	check("Changes", func() error { _, err := e.Changes(ctx, store.FeedQuery{After: last - 50}); return err })
	check("Changes of channels", func() error {
		_, err := e.Changes(ctx, store.FeedQuery{After: last - 50, Channels: []string{"ch1"}})
		return err
	})
	check("Changes of an owner", func() error {
		_, err := e.Changes(ctx, store.FeedQuery{After: last - 50, Owner: owners[1]})
		return err
	})
	check("Prune", func() error {
		if _, err := e.Prune(ctx, now.Add(-store.DefaultRetention)); err != nil {
			return err
		}
		return nil
	})
}
