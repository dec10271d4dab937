package store

import (
	"testing"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestNextAgreesWithTrackers checks Next against a real tracker for every
// stored state, settled or not, and every requested state.
func TestNextAgreesWithTrackers(t *testing.T) {
	states := []tracking.MessageState{}
	for s := tracking.InTransit; int(s) < numStates; s++ {
		states = append(states, s)
	}
	for _, from := range states {
		for _, settle := range []tracking.MessageState{0, tracking.TimedOut} {
			for _, req := range states {
				tr := tracking.NewMessageTracker("x")
				if from != tracking.InTransit {
					if err := tr.Advance(from, nil); err != nil {
						t.Fatalf("reach %v: %v", from, err)
					}
				}
				settled := tr.Settled()
				if settle != 0 && !settled {
					tr.Advance(settle, nil)
					if tr.State() != from { // the timeout moved it: not a settled "from"
						continue
					}
					settled = tr.Settled()
				}
				err := tr.Advance(req, nil)
				to, settles, changed := Next(from, settled, req)
				if to != tr.State() || settles != tr.Settled() {
					t.Errorf("Next(%v, settled=%v, %v) = %v settled=%v; tracker: %v settled=%v (err %v)",
						from, settled, req, to, settles, tr.State(), tr.Settled(), err)
				}
				if want := tr.State() != from || tr.Settled() != settled; changed != want {
					t.Errorf("Next(%v, settled=%v, %v): changed=%v, want %v", from, settled, req, changed, want)
				}
			}
		}
	}
}

func TestNextOutOfRange(t *testing.T) {
	if _, _, changed := Next(tracking.InTransit, false, tracking.MessageState(200)); changed {
		t.Error("an unknown requested state changed the message")
	}
	if _, _, changed := Next(tracking.MessageState(200), false, tracking.DeliveredToServer); changed {
		t.Error("an unknown stored state changed")
	}
}

func TestValidate(t *testing.T) {
	ok := Message{ID: "a", Owner: Instance{Account: "a@b"}, To: "c@d", Raw: []byte("<message/>")}
	for name, b := range map[string]Batch{
		"empty id":       {Messages: []Message{{Owner: ok.Owner, To: "c@d", Raw: ok.Raw}}},
		"no owner":       {Messages: []Message{{ID: "a", To: "c@d", Raw: ok.Raw}}},
		"no recipient":   {Messages: []Message{{ID: "a", Owner: ok.Owner, Raw: ok.Raw}}},
		"no stanza":      {Messages: []Message{{ID: "a", Owner: ok.Owner, To: "c@d"}}},
		"bad state":      {Messages: []Message{func() Message { m := ok; m.State = 99; return m }()}},
		"change to 0":    {Changes: []Change{{ID: "a"}}},
		"change no id":   {Changes: []Change{{State: tracking.DeliveredToServer}}},
		"long id":        {Written: []Written{{ID: string(make([]byte, 5000))}}},
		"session no acc": {Sessions: []Session{{}}},
	} {
		if err := b.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
	b := Batch{Messages: []Message{ok}, Changes: []Change{{ID: "a", State: tracking.DeliveredToServer}}}
	if err := b.Validate(); err != nil {
		t.Error(err)
	}
	closed := Message{ID: "b", Owner: ok.Owner, To: "c@d", State: tracking.Closed}
	if err := (&Batch{Messages: []Message{closed}}).Validate(); err != nil {
		t.Errorf("a settled message needs no stanza: %v", err)
	}
}
