package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestRecipientNormalized: each message goes to, and is recorded with, the
// normalized form of its own address, and an invalid address is refused
// each time.
func TestRecipientNormalized(t *testing.T) {
	records(t, func(t *testing.T, rc Config) {
		f := newFixture(t, rc)
		for i, c := range []struct{ to, want string }{
			{"Bob@Example.org", "bob@example.org"},
			{"carol@example.org", "carol@example.org"},
			{"Bob@Example.org/Phone", "bob@example.org/Phone"},
			{"Bob@Example.org", "bob@example.org"},
		} {
			r := f.send(`{"to":"` + c.to + `","body":"hi"}`)
			if st := f.status(r.ID); st.To != c.want {
				t.Errorf("%d: %s recorded to %s, want %s", i, c.to, st.To, c.want)
			}
			f.fake.mu.Lock()
			sent := f.fake.sent[len(f.fake.sent)-1]
			f.fake.mu.Unlock()
			if sent.ID != r.ID || sent.To.String() != c.want {
				t.Errorf("%d: %s sent to %s, want %s", i, c.to, sent.To, c.want)
			}
		}
		for range 2 {
			code, h, b := f.do("POST", "/v1/messages", `{"to":"bob@","body":"hi"}`)
			if code != http.StatusUnprocessableEntity || problemOf(t, h, b).Type != ProblemTypePrefix+"invalid-jid" {
				t.Fatalf("invalid address: %d %s", code, b)
			}
		}
		if n := f.fake.count(); n != 4 {
			t.Errorf("%d sent, want 4", n)
		}
	})
}

// TestRoutesAsMux: POST /v1/messages is routed by the mux like every
// route: an escaped slash is not the route, and a middleware around the
// gateway finds the request's pattern.
func TestRoutesAsMux(t *testing.T) {
	f := newFixture(t, Config{})
	code, h, b := f.do("POST", "/v1%2Fmessages", `{"to":"bob@example.org","body":"hi"}`)
	if code != http.StatusNotFound || problemOf(t, h, b).Type != ProblemTypePrefix+"not-found" || f.fake.count() != 0 {
		t.Fatalf("POST /v1%%2Fmessages: %d %s, %d sent", code, b, f.fake.count())
	}
	req, _ := http.NewRequest("POST", "/v1/messages", strings.NewReader(`{"to":"bob@example.org","body":"hi"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	w := &nopWriter{h: make(http.Header)}
	f.g.ServeHTTP(w, req)
	if w.status != http.StatusAccepted || req.Pattern != "POST /v1/messages" {
		t.Fatalf("status %d, pattern %q", w.status, req.Pattern)
	}
}

// settlingSender's sends settle (CLOSED) before they return, once the
// gateway recorded that.
type settlingSender struct{ *fakeSender }

func (s settlingSender) send(ctx context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
	t, err := s.fakeSender.send(ctx, m)
	if err != nil {
		return t, err
	}
	// Callbacks run in the order registered: this one after the fake's,
	// which calls Gateway.OnStateChange.
	done := make(chan struct{})
	t.OnStateChange(func(_, to tracking.MessageState, _ *tracking.Response) {
		if to.IsFinal() {
			close(done)
		}
	})
	t.Close()
	<-done
	return t, nil
}

// TestSettledDuringSend: a message whose tracker settles while its send is
// under way is answered and recorded in its final state, and leaves no live
// entry behind (pending 0).
func TestSettledDuringSend(t *testing.T) {
	records(t, func(t *testing.T, rc Config) {
		f := newFixture(t, with(rc, Config{}))
		s := settlingSender{f.fake}
		if err := f.g.addSender("carol@example.org", s); err != nil {
			t.Fatal(err)
		}
		r := f.send(`{"to":"bob@example.org","body":"hi","from":"carol@example.org"}`)
		if st := f.waitState(r.ID, tracking.Closed); !st.Settled {
			t.Errorf("record: %+v", st)
		}
		f.g.mu.Lock()
		_, live := f.g.live[r.ID]
		f.g.mu.Unlock()
		if live || f.g.pending() != 0 {
			t.Errorf("live entry left: %v, %d pending", live, f.g.pending())
		}
	})
}

// TestAddAccountDuringRequests: accounts added while requests are being
// validated and sent (run with -race) are usable at once, and each request
// is sent from the account it names.
func TestAddAccountDuringRequests(t *testing.T) {
	f := newFixture(t, Config{})
	var wg sync.WaitGroup
	fakes := make([]*fakeSender, 8)
	for i := range fakes {
		fakes[i] = &fakeSender{g: f.g, trackers: make(map[string]*tracking.MessageTracker)}
		wg.Go(func() {
			if err := f.g.addSender(fmt.Sprintf("a%d@example.org", i), fakes[i]); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			for range 5 {
				f.send(`{"to":"bob@example.org","body":"hi"}`)
			}
		})
		wg.Go(func() {
			if code, _, b := f.do("GET", "/readyz", ""); code != http.StatusOK {
				t.Errorf("readyz %d %s", code, b)
			}
		})
	}
	wg.Wait()
	for i, fk := range fakes {
		f.send(fmt.Sprintf(`{"to":"bob@example.org","body":"hi","from":"a%d@example.org"}`, i))
		if fk.count() != 1 {
			t.Errorf("account a%d sent %d", i, fk.count())
		}
	}
	if n := f.fake.count(); n != 40 {
		t.Errorf("default account sent %d, want 40", n)
	}
}
