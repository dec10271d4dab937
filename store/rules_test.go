package store

import (
	"errors"
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
	// Ids, recipients and threads go into stanzas: the characters XML
	// does not allow are refused, as Send refuses them.
	for _, bad := range []string{"a\x00b", "x\xff", "c\x01", "c\x1f", "nc\uFFFE", "nc\uFFFF", "\xed\xa0\x80"} {
		for name, b := range map[string]Batch{
			"id":     {Messages: []Message{func() Message { m := ok; m.ID = bad; return m }()}},
			"to":     {Messages: []Message{func() Message { m := ok; m.To = bad; return m }()}},
			"thread": {Messages: []Message{func() Message { m := ok; m.Thread = bad; return m }()}},
		} {
			if err := b.Validate(); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %q: %v, want ErrInvalid", name, bad, err)
			}
		}
	}
	// Changes and voids name records that may predate the rule (Send and
	// the stores accepted such ids before): they must still settle.
	for _, legacy := range []string{"c\x01", "nc\uFFFE"} {
		b := Batch{Changes: []Change{{ID: legacy, State: tracking.TimedOut}}, Written: []Written{{ID: legacy}}}
		if err := b.Validate(); err != nil {
			t.Errorf("a change and a void of a stored id %q: %v", legacy, err)
		}
	}
	for _, bad := range []string{"a\x00b", "x\xff"} {
		for name, b := range map[string]Batch{
			"change id": {Changes: []Change{{ID: bad, State: tracking.DeliveredToServer}}},
			"void id":   {Written: []Written{{ID: bad}}},
		} {
			if err := b.Validate(); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %q: %v, want ErrInvalid", name, bad, err)
			}
		}
	}
	tab := ok
	tab.ID, tab.Thread = "tab\tnl\n\uFFFD 😀", "t\r"
	if err := (&Batch{Messages: []Message{tab}}).Validate(); err != nil {
		t.Errorf("an id and thread XML allows: %v", err)
	}
	closed := Message{ID: "b", Owner: ok.Owner, To: "c@d", State: tracking.Closed}
	if err := (&Batch{Messages: []Message{closed}}).Validate(); err != nil {
		t.Errorf("a settled message needs no stanza: %v", err)
	}
}
