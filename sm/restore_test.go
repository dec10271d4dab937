package sm

import (
	"errors"
	"testing"
)

// Restore numbers stored stanzas by their Seq, leaves gaps for numbers no
// stored stanza claims (acknowledged and retransmitted as nothing) and
// numbers stanzas whose Seq was never recorded after the others.
func TestRestoreNumbers(t *testing.T) {
	var acked []string
	st := New(Config{OnAcked: func(s Stanza) { acked = append(acked, s.ID) }})
	raw := []byte("<message/>")
	err := st.Restore(Resumption{ID: "sm1", Handled: 7, Acked: 10, Sent: 14}, []Stanza{
		{Seq: 13, Name: "message", ID: "b", Raw: raw},
		{Seq: 0, Name: "message", ID: "c", Raw: raw},
		{Seq: 12, Name: "message", ID: "a", Raw: raw},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := st.Resumption()
	if r.ID != "sm1" || r.Handled != 7 || r.Acked != 10 || r.Sent != 14 {
		t.Fatalf("restored %+v", r)
	}
	st.mu.Lock()
	_, tooHigh := st.ackLocked(13)
	st.mu.Unlock()
	st.deliver()
	if tooHigh || len(acked) != 2 || acked[0] != "a" || acked[1] != "b" {
		t.Fatalf("h=13 acknowledged %v (too high: %v), want [a b]", acked, tooHigh)
	}
	st.mu.Lock()
	left := st.queue.drain(nil)
	st.mu.Unlock()
	if len(left) != 1 || left[0].id != "c" || left[0].seq != 14 {
		t.Fatalf("left %+v, want c as 14", left)
	}
	if err := st.Restore(Resumption{}, nil); !errors.Is(err, ErrRestore) {
		t.Fatalf("second Restore: %v", err)
	}
}

// Told follows the h sent in <a/>, never goes back, and starts at the
// restored inbound count.
func TestResumptionTold(t *testing.T) {
	st := New(Config{})
	if err := st.Restore(Resumption{ID: "sm1", Handled: 7}, nil); err != nil {
		t.Fatal(err)
	}
	if got := st.Resumption().Told; got != 7 {
		t.Fatalf("Told after Restore: %d, want 7", got)
	}
	st.ackFor(9)
	st.ackFor(8)
	if got := st.Resumption().Told; got != 9 {
		t.Fatalf("Told: %d, want 9", got)
	}
}
