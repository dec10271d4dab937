package gateway

import (
	"net/http"
	"testing"
)

// TestRecipientCache: the last recipient parsed is reused only for the same
// address as given: each message goes to, and is recorded with, the
// normalized form of its own address, and an invalid address is refused
// each time.
func TestRecipientCache(t *testing.T) {
	records(t, func(t *testing.T, rc Config) {
		f := newFixture(t, rc)
		for i, c := range []struct{ to, want string }{
			{"Bob@Example.org", "bob@example.org"},
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
		if n := f.fake.count(); n != 5 {
			t.Errorf("%d sent, want 5", n)
		}
	})
}
