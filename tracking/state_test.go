package tracking

import (
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/trackcore"
)

// TestStatesMatchCore checks that MessageState and the implementation's
// states agree, value and name, since trackers convert between them.
func TestStatesMatchCore(t *testing.T) {
	for s := InTransit; s <= Error; s++ {
		if c := trackcore.State(s); c.String() != s.String() || c.IsFinal() != s.IsFinal() {
			t.Errorf("state %d: %v/%v vs core %v/%v", s, s, s.IsFinal(), c, c.IsFinal())
		}
	}
	if Error+1 != MessageState(trackcore.NumStates) {
		t.Errorf("tracking has %d states, the core %d", Error+1, trackcore.NumStates)
	}
	want := []string{"IN_TRANSIT", "DELIVERED_TO_SERVER", "DELIVERED_TO_RECIPIENT", "SEEN_BY_RECIPIENT", "ABORTED", "TIMED_OUT", "CLOSED", "ERROR"}
	for i, n := range want {
		if got := MessageState(i).String(); got != n {
			t.Errorf("MessageState(%d) = %s, want %s", i, got, n)
		}
	}
}
