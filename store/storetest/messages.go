package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func testRoundTrip(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	created := time.Date(2026, 1, 2, 3, 4, 5, 6000000, time.UTC)
	m := msg(alice, "m1")
	m.Room, m.Thread, m.Channel = true, "th-1", "alerts"
	m.To = "room@conference.example.org"
	m.Created = created
	m.Deadline = created.Add(time.Hour)
	got := insert(t, s, m)
	if got[0].Cursor <= 0 {
		t.Fatalf("creation cursor %d", got[0].Cursor)
	}
	r := get(t, s, "m1")
	if r.ID != "m1" || r.Owner != alice || r.To != m.To || !r.Room || r.Thread != "th-1" || r.Channel != "alerts" {
		t.Errorf("read back %+v", r.Message)
	}
	if !bytes.Equal(r.Raw, m.Raw) || !sameTime(r.Created, created) || !sameTime(r.Deadline, m.Deadline) {
		t.Errorf("raw/created/deadline: %q %v %v", r.Raw, r.Created, r.Deadline)
	}
	if r.State != tracking.InTransit || r.Settled || r.Written || r.Cursor != got[0].Cursor {
		t.Errorf("state %v settled %v written %v cursor %d", r.State, r.Settled, r.Written, r.Cursor)
	}
	if len(r.History) != 1 || r.History[0].State != tracking.InTransit || r.History[0].Cursor != got[0].Cursor {
		t.Fatalf("history %+v", r.History)
	}

	at := created.Add(time.Minute)
	ev := store.Evidence{From: "room@conference.example.org/alice", StanzaID: "sid-9"}
	b := &store.Batch{Changes: []store.Change{{ID: "m1", State: tracking.DeliveredToRecipient, At: at, Evidence: ev}}}
	commit(t, s, b)
	if b.Changes[0].Cursor <= got[0].Cursor {
		t.Fatalf("change cursor %d after creation %d", b.Changes[0].Cursor, got[0].Cursor)
	}
	errAt := at.Add(time.Second)
	// Error is refused after a receipt; the evidence of an error round-trips on another message.
	insert(t, s, msg(alice, "m2"))
	b2 := &store.Batch{Changes: []store.Change{{ID: "m2", State: tracking.Error, At: errAt,
		Evidence: store.Evidence{From: "bob@example.net", Condition: "service-unavailable", Text: "gone fishing"}}}}
	commit(t, s, b2)
	r = get(t, s, "m1")
	if r.State != tracking.DeliveredToRecipient || r.Cursor != b.Changes[0].Cursor || !sameTime(r.Updated, at) {
		t.Errorf("after receipt: %v cursor %d updated %v", r.State, r.Cursor, r.Updated)
	}
	h := r.History[1]
	if h.Evidence != ev || !sameTime(h.At, at) || h.ID != "m1" || h.Owner != alice || h.To != m.To || !h.Room || h.Channel != "alerts" {
		t.Errorf("history entry %+v", h)
	}
	r2 := get(t, s, "m2")
	if e := r2.History[1].Evidence; e.Condition != "service-unavailable" || e.Text != "gone fishing" || e.From != "bob@example.net" {
		t.Errorf("error evidence %+v", e)
	}
	if _, err := s.Message(ctxT(t), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
	// A store sets Created and At when they are zero.
	before := time.Now().Add(-time.Minute)
	insert(t, s, msg(alice, "m3"))
	record(t, s, "m3", tracking.DeliveredToServer, store.Evidence{})
	r3 := get(t, s, "m3")
	if r3.Created.Before(before) || r3.History[1].At.Before(before) {
		t.Errorf("zero times not set: %v %v", r3.Created, r3.History[1].At)
	}
}

func testDuplicate(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	insert(t, s, msg(alice, "d1"))
	err := s.Commit(ctxT(t), &store.Batch{Messages: []store.Message{msg(alice, "d2"), msg(carol, "d1")}})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate id: %v, want ErrExists", err)
	}
	if _, err := s.Message(ctxT(t), "d2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed batch wrote part of itself: %v", err)
	}
	if r := get(t, s, "d1"); r.Owner != alice {
		t.Errorf("duplicate replaced the owner: %v", r.Owner)
	}
	// Two copies within one batch.
	err = s.Commit(ctxT(t), &store.Batch{Messages: []store.Message{msg(alice, "d3"), msg(alice, "d3")}})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate within a batch: %v, want ErrExists", err)
	}
}

func testMonotonic(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	insert(t, s, msg(alice, "a"))
	type step struct {
		st      tracking.MessageState
		applied bool
	}
	for i, c := range []step{
		{tracking.DeliveredToServer, true},
		{tracking.DeliveredToServer, false}, // the same evidence twice
		{tracking.DeliveredToRecipient, true},
		{tracking.DeliveredToServer, false}, // backwards
		{tracking.Error, false},             // an error after a receipt
		{tracking.Aborted, false},
		{tracking.DeliveredToRecipient, false},
		{tracking.SeenByRecipient, true},
		{tracking.SeenByRecipient, false},
		{tracking.Closed, false}, // settled
	} {
		got := record(t, s, "a", c.st, store.Evidence{From: "bob@example.net/phone"})
		if (got.Cursor != 0) != c.applied {
			t.Errorf("step %d (%v): cursor %d, applied want %v", i, c.st, got.Cursor, c.applied)
		}
	}
	r := get(t, s, "a")
	want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.SeenByRecipient}
	if !slices.Equal(states(r.History), want) || r.State != tracking.SeenByRecipient || !r.Settled {
		t.Errorf("history %v state %v settled %v", states(r.History), r.State, r.Settled)
	}
	// Error is lifted by a receipt; a timeout in DELIVERED_TO_RECIPIENT settles
	// without a change.
	insert(t, s, msg(alice, "b"))
	record(t, s, "b", tracking.Error, store.Evidence{Condition: "service-unavailable"})
	record(t, s, "b", tracking.DeliveredToRecipient, store.Evidence{From: "bob@example.net/laptop"})
	to := record(t, s, "b", tracking.TimedOut, store.Evidence{})
	r = get(t, s, "b")
	if r.State != tracking.DeliveredToRecipient || !r.Settled || len(r.History) != 3 {
		t.Errorf("b: %v settled %v history %v", r.State, r.Settled, states(r.History))
	}
	if to.Cursor != 0 {
		t.Errorf("settling without a state change got a feed event %d", to.Cursor)
	}
	if c := record(t, s, "b", tracking.SeenByRecipient, store.Evidence{}); c.Cursor != 0 {
		t.Error("a settled message changed")
	}
	// A change for an unknown message is not applied and not an error.
	if c := record(t, s, "unknown", tracking.DeliveredToServer, store.Evidence{}); c.Cursor != 0 {
		t.Error("a change to an unknown message was applied")
	}
	// A message and its changes in one batch, applied in order.
	b := &store.Batch{
		Messages: []store.Message{msg(alice, "c")},
		Changes: []store.Change{
			{ID: "c", State: tracking.DeliveredToServer},
			{ID: "c", State: tracking.Aborted},
			{ID: "c", State: tracking.DeliveredToRecipient},
		},
	}
	commit(t, s, b)
	if b.Changes[0].Cursor <= b.Messages[0].Cursor || b.Changes[1].Cursor != 0 || b.Changes[2].Cursor <= b.Changes[0].Cursor {
		t.Errorf("cursors in a batch: message %d changes %d %d %d", b.Messages[0].Cursor,
			b.Changes[0].Cursor, b.Changes[1].Cursor, b.Changes[2].Cursor)
	}
	// A message committed already settled (a scheduled send cancelled).
	cl := msg(alice, "d")
	cl.Raw, cl.State = nil, tracking.Closed
	insert(t, s, cl)
	r = get(t, s, "d")
	if r.State != tracking.Closed || !r.Settled {
		t.Errorf("settled at creation: %v %v", r.State, r.Settled)
	}
	// Its creation, in its history and in the feed, says so too.
	if len(r.History) != 1 || r.History[0].State != tracking.Closed || !r.History[0].Settled ||
		r.History[0].Cursor != r.Cursor {
		t.Errorf("history of a message settled at creation: %+v", r.History)
	}
	for _, c := range all(t, s, store.FeedQuery{}) {
		if c.ID == "d" && (c.State != tracking.Closed || !c.Settled) {
			t.Errorf("feed event of a message settled at creation: %+v", c)
		}
	}
}

func testSettle(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	insert(t, s, msg(alice, "s"))
	record(t, s, "s", tracking.DeliveredToServer, store.Evidence{})
	if r := get(t, s, "s"); len(r.Raw) == 0 {
		t.Error("stanza dropped before the message settled")
	}
	record(t, s, "s", tracking.Closed, store.Evidence{})
	r := get(t, s, "s")
	if !r.Settled || r.State != tracking.Closed || len(r.Raw) != 0 {
		t.Errorf("settled %v state %v raw %d bytes", r.Settled, r.State, len(r.Raw))
	}
}

// testConcurrentRecorders has several handles (instances) record the same
// evidence for the same messages at once.
func testConcurrentRecorders(t *testing.T, open Open) {
	s, name := fresh(t, open)
	handles := []store.Store{s, opened(t, open, name), opened(t, open, name)}
	const n = 20
	for i := range n {
		insert(t, s, msg(alice, fmt.Sprint("r", i)))
	}
	seq := []tracking.MessageState{tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.Error, tracking.SeenByRecipient}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 6 {
		h := handles[w%len(handles)]
		wg.Go(func() {
			for i := range n {
				for k, st := range seq {
					if (w+k)%3 == 0 { // recorders see the evidence in different orders
						st = seq[len(seq)-1-k]
					}
					b := &store.Batch{Changes: []store.Change{{ID: fmt.Sprint("r", i), State: st, Evidence: store.Evidence{From: "bob@example.net/x"}}}}
					if err := h.Commit(ctxT(t), b); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range n {
		r := get(t, s, fmt.Sprint("r", i))
		// One consistent history: each state once, each step allowed from
		// the one before, and the record agrees with its history.
		cur, settled := tracking.InTransit, false
		seen := map[tracking.MessageState]bool{}
		for j, c := range r.History {
			if j == 0 {
				continue
			}
			to, sets, changed := store.Next(cur, settled, c.State)
			if !changed || to != c.State || seen[c.State] {
				t.Fatalf("r%d: history %v is not a path of the graph", i, states(r.History))
			}
			seen[c.State] = true
			cur, settled = to, sets
			if j > 1 && c.Cursor <= r.History[j-1].Cursor {
				t.Fatalf("r%d: history cursors out of order", i)
			}
		}
		if r.State != cur || r.State != tracking.SeenByRecipient || !r.Settled {
			t.Fatalf("r%d: state %v settled %v, history %v", i, r.State, r.Settled, states(r.History))
		}
	}
}

func testPending(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	var ids []string
	for i := range 30 {
		o := alice
		if i%3 == 1 {
			o = alice2
		}
		id := fmt.Sprintf("p%02d", 29-i) // ids not in commit order
		m := msg(o, id)
		m.Deadline = time.Unix(1_800_000_000, 0)
		insert(t, s, m)
		if o == alice {
			ids = append(ids, id)
		}
	}
	record(t, s, ids[0], tracking.SeenByRecipient, store.Evidence{}) // settled
	record(t, s, ids[1], tracking.DeliveredToServer, store.Evidence{})
	commit(t, s, &store.Batch{Written: []store.Written{{ID: ids[2], Seq: 4294967295}, {ID: ids[3], Seq: 0}}})
	var got []store.Message
	err := s.Pending(ctxT(t), alice, func(m store.Message) error { got = append(got, m); return nil })
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, m := range got {
		gotIDs = append(gotIDs, m.ID)
	}
	if !slices.Equal(gotIDs, ids[1:]) {
		t.Fatalf("Pending = %v\nwant %v", gotIDs, ids[1:])
	}
	if got[0].State != tracking.DeliveredToServer || len(got[0].Raw) == 0 || !sameTime(got[0].Deadline, time.Unix(1_800_000_000, 0)) {
		t.Errorf("pending message %+v", got[0])
	}
	if !got[1].Written || got[1].Seq != 4294967295 || !got[2].Written || got[2].Seq != 0 || got[3].Written {
		t.Errorf("sequence numbers: %v/%d %v/%d %v", got[1].Written, got[1].Seq, got[2].Written, got[2].Seq, got[3].Written)
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Pending(ctxT(t), alice, func(store.Message) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Pending stopped by fn: %v after %d", err, n)
	}
	n = 0
	s.Pending(ctxT(t), carol, func(store.Message) error { n++; return nil })
	if n != 0 {
		t.Errorf("another owner's messages: %d", n)
	}
}

func testSession(t *testing.T, open Open) {
	s, name := fresh(t, open)
	if _, err := s.Session(ctxT(t), alice); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no session: %v", err)
	}
	ss := store.Session{Owner: alice, JID: "alice@example.org/bot", ID: "sm-id-1", Location: "[::1]:5222",
		Max: 300 * time.Second, Inbound: 4294967290, Outbound: 12, Acked: 10}
	commit(t, s, &store.Batch{Sessions: []store.Session{ss}})
	got, err := opened(t, open, name).Session(ctxT(t), alice)
	if err != nil {
		t.Fatal(err)
	}
	if got.Updated.IsZero() {
		t.Error("Updated not set")
	}
	got.Updated = time.Time{}
	if got != ss {
		t.Errorf("read back %+v\nwant %+v", got, ss)
	}
	ss.ID, ss.Inbound = "", 7
	commit(t, s, &store.Batch{Sessions: []store.Session{ss}})
	got, _ = s.Session(ctxT(t), alice)
	if got.ID != "" || got.Inbound != 7 {
		t.Errorf("replaced: %+v", got)
	}
	if _, err := s.Session(ctxT(t), alice2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another resource's session: %v", err)
	}
}

// testEmptyThreadChannel: a message without a thread or a channel (most
// messages) reads back with both empty, through Message, Pending and the
// feed, and the feed's channel filter finds it under the empty channel
// and not under another.
func testEmptyThreadChannel(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	withCh := msg(alice, "e0")
	withCh.Thread, withCh.Channel = "th", "alerts"
	insert(t, s, withCh, msg(alice, "e1"))
	record(t, s, "e1", tracking.DeliveredToServer, store.Evidence{})
	if r := get(t, s, "e1"); r.Thread != "" || r.Channel != "" {
		t.Errorf("Message: thread %q channel %q, want both empty", r.Thread, r.Channel)
	}
	var pending []string
	if err := s.Pending(ctxT(t), alice, func(m store.Message) error {
		pending = append(pending, fmt.Sprintf("%s:%q:%q", m.ID, m.Thread, m.Channel))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{`e0:"th":"alerts"`, `e1:"":""`}; !slices.Equal(pending, want) {
		t.Errorf("Pending: %v, want %v", pending, want)
	}
	feed := func(q store.FeedQuery) (out []string) {
		cs, err := s.Changes(ctxT(t), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			out = append(out, fmt.Sprintf("%s/%v:%q", c.ID, c.State, c.Channel))
		}
		return out
	}
	e1 := []string{`e1/IN_TRANSIT:""`, `e1/DELIVERED_TO_SERVER:""`}
	if got := feed(store.FeedQuery{Channels: []string{""}}); !slices.Equal(got, e1) {
		t.Errorf("feed of channel \"\": %v, want %v", got, e1)
	}
	if got, want := feed(store.FeedQuery{Channels: []string{"alerts"}}), []string{`e0/IN_TRANSIT:"alerts"`}; !slices.Equal(got, want) {
		t.Errorf("feed of channel alerts: %v, want %v", got, want)
	}
}
