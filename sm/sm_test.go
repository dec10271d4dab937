package sm

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder collects the callbacks of a State.
type recorder struct {
	mu                  sync.Mutex
	acked, lost, resent []Stanza
	ch                  chan string // "acked:id", "lost:id", "resent:id"
}

func newRecorder() *recorder { return &recorder{ch: make(chan string, 100000)} }

func (r *recorder) config(cfg Config) Config {
	cfg.OnAcked = func(s Stanza) { r.add(&r.acked, "acked", s) }
	cfg.OnLost = func(s Stanza) { r.add(&r.lost, "lost", s) }
	cfg.OnResend = func(s Stanza) { r.add(&r.resent, "resent", s) }
	return cfg
}

func (r *recorder) add(list *[]Stanza, what string, s Stanza) {
	r.mu.Lock()
	*list = append(*list, s)
	r.mu.Unlock()
	r.ch <- what + ":" + s.ID
}

func (r *recorder) ids(which string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l []Stanza
	switch which {
	case "acked":
		l = r.acked
	case "lost":
		l = r.lost
	case "resent":
		l = r.resent
	}
	var ids []string
	for _, s := range l {
		ids = append(ids, s.ID)
	}
	return ids
}

// next waits for the next callback.
func (r *recorder) next(t *testing.T) string {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(time.Hour): // fake time in a bubble
		t.Fatal("no callback")
		return ""
	}
}

func TestSmoke(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		info := st.Info()
		if !info.Enabled || !info.Resumable || info.Max != time.Minute || info.Location != "[2001:db8::1]:5222" {
			t.Fatalf("info %+v", info)
		}
		start := time.Now()
		for i := range 3 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		for i := range 3 {
			if ev := rec.next(t); ev != fmt.Sprintf("acked:m%d", i) {
				t.Fatalf("event %d: %s", i, ev)
			}
		}
		// The first went out on an idle link and its <r/> at once; the
		// others are covered by it or by the time rule.
		if d := time.Since(start); d > DefaultAckDelay {
			t.Errorf("acked after %v", d)
		}
		c.close()
	})
}
