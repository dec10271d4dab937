package sm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"
)

// heldLog records the calls of Config.OnAmbiguous.
type heldLog struct {
	mu    sync.Mutex
	calls [][]string
}

func (h *heldLog) config(cfg Config) Config {
	cfg.OnAmbiguous = func(ss []Stanza) {
		var ids []string
		for _, s := range ss {
			ids = append(ids, s.ID)
		}
		h.mu.Lock()
		h.calls = append(h.calls, ids)
		h.mu.Unlock()
	}
	return cfg
}

func (h *heldLog) get() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// restoreAmbiguous restores a (numbered 200) and x, y, z (no number) into
// a State with OnAmbiguous, and resumes with <resumed h/>.
func restoreAmbiguous(t *testing.T, h uint32, unacked []Stanza) (*fakeServer, *State, *recorder, *heldLog, *client) {
	srv := newFakeServer(t)
	srv.smID, srv.resumable, srv.inH = "sm1", true, h
	rec, held := newRecorder(), &heldLog{}
	st := New(held.config(rec.config(Config{})))
	r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
	if err := st.Restore(r, unacked); err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, srv, st, nil)
	if !st.Resumed() {
		t.Fatal("not resumed")
	}
	return srv, st, rec, held, c
}

func xyz() []Stanza {
	return []Stanza{restoredMsg(200, "a"), restoredMsg(0, "x"), restoredMsg(0, "y"), restoredMsg(0, "z")}
}

// With OnAmbiguous, an h that covers a guessed number holds back every
// stanza without a recorded number: none is written nor counted until
// ResolveAmbiguous, which acknowledges the ones proved received and
// retransmits the others, numbered from their write.
func TestAmbiguousHeldThenResolved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, st, rec, held, c := restoreAmbiguous(t, 201, xyz())
		if evs := waitEvents(t, rec, 1); !slices.Equal(evs, []string{"acked:a"}) {
			t.Fatalf("reports %v, want [acked:a]", evs)
		}
		if got := held.get(); len(got) != 1 || !slices.Equal(got[0], []string{"x", "y", "z"}) {
			t.Fatalf("OnAmbiguous calls %v, want [[x y z]]", got)
		}
		synctest.Wait()
		if got := srv.ids(); len(got) != 0 {
			t.Fatalf("server got %v before the resolution", got)
		}
		if info := st.Info(); info.Sent != 201 || info.Unacked != 3 {
			t.Fatalf("held: %+v, want Sent 201 (held stanzas uncounted), Unacked 3", info)
		}
		settled, resent, err := st.ResolveAmbiguous(context.Background(), c.sess, func(s Stanza) bool { return s.ID == "y" })
		if err != nil || settled != 1 || resent != 2 {
			t.Fatalf("ResolveAmbiguous: %d settled, %d resent, %v", settled, resent, err)
		}
		c.sc.requestAck()
		if evs := waitEvents(t, rec, 3); !slices.Equal(evs, []string{"acked:y", "acked:x", "acked:z"}) {
			t.Fatalf("reports %v, want [acked:y acked:x acked:z]", evs)
		}
		synctest.Wait()
		if got := srv.ids(); !slices.Equal(got, []string{"x", "z"}) {
			t.Fatalf("server got %v, want [x z]", got)
		}
		if info := st.Info(); info.Sent != 203 || info.Acked != 203 || info.Unacked != 0 {
			t.Fatalf("after: %+v, want Sent = Acked = 203", info)
		}
		c.close()
	})
}

// On the first resumption after Restore, an h that covers no guessed
// number does not prove that the server lacks those stanzas (the session
// of the dead connection may still route them after it handed its count
// over): with OnAmbiguous they are held back all the same.
func TestAmbiguousNotCoveredHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, st, rec, held, c := restoreAmbiguous(t, 200, xyz())
		if evs := waitEvents(t, rec, 1); !slices.Equal(evs, []string{"acked:a"}) {
			t.Fatalf("reports %v", evs)
		}
		if got := held.get(); len(got) != 1 || !slices.Equal(got[0], []string{"x", "y", "z"}) {
			t.Fatalf("OnAmbiguous calls %v, want [[x y z]]", got)
		}
		synctest.Wait()
		if got := srv.ids(); len(got) != 0 {
			t.Fatalf("server got %v before the resolution", got)
		}
		if info := st.Info(); info.Sent != 200 || info.Unacked != 3 {
			t.Fatalf("held: %+v, want Sent 200, Unacked 3", info)
		}
		c.close()
	})
}

// The first resumption after Restore holds back the numbered restored
// messages its h does not cover too (with the unnumbered ones, in the
// order of first writes): none is retransmitted before ResolveAmbiguous,
// which acknowledges the ones proved received and writes the others,
// numbered from h.
func TestAmbiguousFirstResumptionHoldsNumbered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.smID, srv.resumable, srv.inH = "sm1", true, 201
		rec, held := newRecorder(), &heldLog{}
		st := New(held.config(rec.config(Config{})))
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 203}
		unacked := []Stanza{restoredMsg(0, "x"), restoredMsg(203, "d"), restoredMsg(201, "b"), restoredMsg(200, "a"), restoredMsg(202, "c")}
		if err := st.Restore(r, unacked); err != nil {
			t.Fatal(err)
		}
		c := mustDial(t, srv, st, nil)
		if evs := waitEvents(t, rec, 2); !slices.Equal(evs, []string{"acked:a", "acked:b"}) {
			t.Fatalf("reports %v, want [acked:a acked:b]", evs)
		}
		if got := held.get(); len(got) != 1 || !slices.Equal(got[0], []string{"c", "d", "x"}) {
			t.Fatalf("OnAmbiguous calls %v, want [[c d x]]", got)
		}
		synctest.Wait()
		if got := srv.ids(); len(got) != 0 {
			t.Fatalf("server got %v before the resolution (retransmitted)", got)
		}
		if info := st.Info(); info.Sent != 201 || info.Unacked != 3 {
			t.Fatalf("held: %+v, want Sent 201 (held stanzas uncounted), Unacked 3", info)
		}
		settled, resent, err := st.ResolveAmbiguous(context.Background(), c.sess, func(s Stanza) bool { return s.ID == "d" })
		if err != nil || settled != 1 || resent != 2 {
			t.Fatalf("ResolveAmbiguous: %d settled, %d resent, %v", settled, resent, err)
		}
		c.sc.requestAck()
		if evs := waitEvents(t, rec, 3); !slices.Equal(evs, []string{"acked:d", "acked:c", "acked:x"}) {
			t.Fatalf("reports %v, want [acked:d acked:c acked:x]", evs)
		}
		synctest.Wait()
		if got := srv.ids(); !slices.Equal(got, []string{"c", "x"}) {
			t.Fatalf("server got %v, want [c x]", got)
		}
		if info := st.Info(); info.Sent != 203 || info.Acked != 203 || info.Unacked != 0 {
			t.Fatalf("after: %+v, want Sent = Acked = 203", info)
		}
		c.close()
	})
}

// Only the first resumption after Restore holds back what its h does not
// cover: a later one within the process retransmits the stanzas it wrote
// itself, and announces nothing.
func TestAmbiguousLaterResumptionRetransmits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, st, rec, held, c := restoreAmbiguous(t, 201, xyz())
		waitEvents(t, rec, 1) // acked:a
		if _, resent, err := st.ResolveAmbiguous(context.Background(), c.sess, nil); err != nil || resent != 3 {
			t.Fatalf("resolve: %d resent, %v", resent, err)
		}
		srv.mu.Lock()
		srv.lose = func(id string) bool { return id == "n1" || id == "n2" }
		srv.mu.Unlock()
		sendMsg(t, st, c.sess, "n1")
		sendMsg(t, st, c.sess, "n2")
		synctest.Wait()
		c.drop()
		srv.mu.Lock()
		srv.lose = nil
		srv.mu.Unlock()
		c = mustDial(t, srv, st, nil)
		if !st.Resumed() {
			t.Fatal("not resumed")
		}
		c.sc.requestAck()
		if evs := waitEvents(t, rec, 5); !slices.Equal(evs, []string{"acked:x", "acked:y", "acked:z", "acked:n1", "acked:n2"}) {
			t.Fatalf("reports %v", evs)
		}
		synctest.Wait()
		if got := held.get(); len(got) != 1 {
			t.Fatalf("OnAmbiguous calls %v, want only the first resumption's", got)
		}
		if got := srv.ids(); !slices.Equal(got, []string{"x", "y", "z", "n1", "n2"}) {
			t.Fatalf("server got %v, want [x y z n1 n2]", got)
		}
		c.close()
	})
}

// A connection lost before the resolution keeps the held stanzas: the next
// resumption announces them again (uncounted, whatever its h); a
// resolution on the dead connection acknowledges what it proved and
// writes nothing.
func TestAmbiguousSurvivesReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, st, rec, held, c := restoreAmbiguous(t, 201, xyz())
		waitEvents(t, rec, 1) // acked:a
		c.drop()
		settled, resent, err := st.ResolveAmbiguous(context.Background(), c.sess, func(s Stanza) bool { return s.ID == "x" })
		if !errors.Is(err, ErrConnEnded) || settled != 1 || resent != 0 {
			t.Fatalf("on a dead connection: %d settled, %d resent, %v", settled, resent, err)
		}
		if evs := waitEvents(t, rec, 1); !slices.Equal(evs, []string{"acked:x"}) {
			t.Fatalf("reports %v", evs)
		}
		c = mustDial(t, srv, st, nil)
		if got := held.get(); len(got) != 2 || !slices.Equal(got[1], []string{"y", "z"}) {
			t.Fatalf("OnAmbiguous calls %v, want [x y z] then [y z]", got)
		}
		if info := st.Info(); info.Sent != 201 || info.Unacked != 2 {
			t.Fatalf("%+v", info)
		}
		if _, resent, err := st.ResolveAmbiguous(context.Background(), c.sess, nil); err != nil || resent != 2 {
			t.Fatalf("resolve: %d resent, %v", resent, err)
		}
		c.sc.requestAck()
		if evs := waitEvents(t, rec, 2); !slices.Equal(evs, []string{"acked:y", "acked:z"}) {
			t.Fatalf("reports %v", evs)
		}
		synctest.Wait()
		if got := srv.ids(); !slices.Equal(got, []string{"y", "z"}) {
			t.Fatalf("server got %v, want [y z]", got)
		}
		c.close()
	})
}

// A resumption that fails hands the held stanzas to the Policy, which
// re-sends them on the new stream.
func TestAmbiguousFailedResumption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, st, rec, _, c := restoreAmbiguous(t, 201, xyz())
		waitEvents(t, rec, 1) // acked:a
		c.drop()
		srv.mu.Lock()
		srv.resumable = false
		srv.mu.Unlock()
		srv.resumeReply = func(uint32) string {
			return `<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`
		}
		c = mustDial(t, srv, st, nil)
		if st.Resumed() {
			t.Fatal("resumed")
		}
		c.sc.requestAck()
		evs := waitEvents(t, rec, 6)
		synctest.Wait()
		if r, a := rec.ids("resent"), rec.ids("acked"); !slices.Equal(r, []string{"x", "y", "z"}) || !slices.Equal(a, []string{"a", "x", "y", "z"}) {
			t.Fatalf("reports %v", evs)
		}
		if got := srv.ids(); !slices.Equal(got, []string{"x", "y", "z"}) {
			t.Fatalf("server got %v", got)
		}
		c.close()
	})
}

// TestResolveLeavesHeld: a held stanza that ResolveAmbiguous writes again
// leaves st.held in the same step that queues its copy on the stream, so
// that it is never in both. (A resumption between the two steps would
// retransmit the copy and announce the stanza as held once more: the
// caller's archive check would then write it a third time, or acknowledge
// it twice.)
func TestResolveLeavesHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.smID, srv.resumable, srv.inH = "sm1", true, 201
		rec, held := newRecorder(), &heldLog{}
		var st *State
		var both []string
		cfg := held.config(rec.config(Config{}))
		cfg.OnWritten = func(s Stanza) {
			// Runs under st.mu, in the step that queued s.
			for _, e := range st.held {
				if e.id == s.ID {
					both = append(both, s.ID)
				}
			}
		}
		st = New(cfg)
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
		if err := st.Restore(r, xyz()); err != nil {
			t.Fatal(err)
		}
		c := mustDial(t, srv, st, nil)
		settled, resent, err := st.ResolveAmbiguous(context.Background(), c.sess, func(s Stanza) bool { return s.ID == "y" })
		if err != nil || settled != 1 || resent != 2 {
			t.Fatalf("ResolveAmbiguous: %d settled, %d resent, %v", settled, resent, err)
		}
		synctest.Wait()
		if len(both) > 0 {
			t.Errorf("%v queued on the stream while still held", both)
		}
		if got := srv.ids(); !slices.Equal(got, []string{"x", "z"}) {
			t.Errorf("server got %v, want [x z]", got)
		}
		// Whether the last copy's <r/> went out at once (an idle link) or
		// after the ack delay depends on whether the first copy's ack was
		// back: let the bubble's clock pass the delay either way.
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if info := st.Info(); info.Sent != 203 || info.Unacked != 0 {
			t.Errorf("%+v, want Sent 203 and nothing held", info)
		}
		c.close()
	})
}

// TestAmbiguousReported: the callbacks report a held stanza as Ambiguous
// (OnAmbiguous, and OnAcked for one ResolveAmbiguous settled), so that a
// caller can persist the doubt; a copy written again has its own number
// on the stream and is not ambiguous.
func TestAmbiguousReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.smID, srv.resumable, srv.inH = "sm1", true, 201
		rec := newRecorder()
		var mu sync.Mutex
		var got []string
		note := func(what string, s Stanza) {
			mu.Lock()
			got = append(got, fmt.Sprintf("%s:%s:%v", what, s.ID, s.Ambiguous))
			mu.Unlock()
		}
		cfg := rec.config(Config{})
		acked := cfg.OnAcked
		cfg.OnAcked = func(s Stanza) { note("acked", s); acked(s) }
		cfg.OnWritten = func(s Stanza) { note("written", s) }
		cfg.OnAmbiguous = func(ss []Stanza) {
			for _, s := range ss {
				note("held", s)
			}
		}
		st := New(cfg)
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
		if err := st.Restore(r, xyz()); err != nil {
			t.Fatal(err)
		}
		c := mustDial(t, srv, st, nil)
		waitEvents(t, rec, 1) // acked:a
		if _, _, err := st.ResolveAmbiguous(context.Background(), c.sess, func(s Stanza) bool { return s.ID == "y" }); err != nil {
			t.Fatal(err)
		}
		waitEvents(t, rec, 1) // acked:y
		mu.Lock()
		seen := slices.Clone(got)
		mu.Unlock()
		// The copies' acks may come at any point after their writes (the
		// first copy goes out on an idle link, and its ack is asked for at
		// once): they are not ambiguous either.
		seen = slices.DeleteFunc(seen, func(s string) bool {
			return s == "acked:x:false" || s == "acked:z:false"
		})
		want := []string{"acked:a:false", "held:x:true", "held:y:true", "held:z:true", "acked:y:true", "written:x:false", "written:z:false"}
		if !slices.Equal(seen, want) {
			t.Errorf("reported %v, want %v", seen, want)
		}
		c.close()
	})
}

// A held stanza whose Raw is damaged (see TestRestoreDamagedRaw) is
// reported lost by ResolveAmbiguous instead of written again; the others
// are retransmitted and counted as usual.
func TestAmbiguousHeldDamaged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stanzas := xyz()
		stanzas[2].Raw = stanzas[2].Raw[:len(stanzas[2].Raw)-5] // y cut short
		srv, st, rec, _, c := restoreAmbiguous(t, 201, stanzas)
		if evs := waitEvents(t, rec, 1); !slices.Equal(evs, []string{"acked:a"}) {
			t.Fatalf("reports %v, want [acked:a]", evs)
		}
		settled, resent, err := st.ResolveAmbiguous(context.Background(), c.sess, nil)
		if err != nil || settled != 0 || resent != 2 {
			t.Fatalf("ResolveAmbiguous: %d settled, %d resent, %v", settled, resent, err)
		}
		c.sc.requestAck()
		// x's ack may come before y is found damaged (the requester asks
		// for it as soon as x is written): the order of lost:y among the
		// acks is not fixed, that of the acks is.
		evs := waitEvents(t, rec, 3)
		if acks := slices.DeleteFunc(slices.Clone(evs), func(e string) bool { return e == "lost:y" }); len(acks) != 2 || !slices.Equal(acks, []string{"acked:x", "acked:z"}) {
			t.Fatalf("reports %v, want lost:y, acked:x and acked:z, the acks in that order", evs)
		}
		synctest.Wait()
		if got := srv.ids(); !slices.Equal(got, []string{"x", "z"}) {
			t.Fatalf("server got %v, want [x z]", got)
		}
		if info := st.Info(); info.Sent != 203 || info.Acked != 203 || info.Unacked != 0 {
			t.Fatalf("after: %+v, want Sent = Acked = 203", info)
		}
		c.close()
	})
}
