package sm

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"testing/synctest"

	"mellium.im/xmpp/jid"
)

// The first <resumed h> of a restored stream may count stanzas the store
// did not keep; an excess up to maxLooseExcess is accepted without an
// allocation per stanza, and one beyond it ends the stream as too high,
// cheaply too (a server's garbage h once cost an entry per number).
func TestRestoreHugeResumedH(t *testing.T) {
	for _, tc := range []struct {
		name    string
		excess  uint32
		refused bool
	}{
		{"at the bound", maxLooseExcess, false},
		{"beyond it", 1 << 20, true},
		{"garbage", 1 << 30, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
				srv := newFakeServer(t)
				srv.smID, srv.resumable, srv.inH = r.ID, true, r.Sent+tc.excess
				rec := newRecorder()
				st := New(rec.config(Config{}))
				if err := st.Restore(r, []Stanza{restoredMsg(200, "a")}); err != nil {
					t.Fatal(err)
				}
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				c, err := dial(t, srv, st, nil)
				runtime.ReadMemStats(&after)
				if err == nil {
					defer c.close()
				}
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
					t.Errorf("h %d above the restored count: the resumption allocated %d MB", tc.excess, alloc>>20)
				}
				switch {
				case tc.refused && !errors.Is(err, ErrHandledCountTooHigh):
					t.Errorf("h %d above the restored count: %v, want ErrHandledCountTooHigh", tc.excess, err)
				case !tc.refused && (err != nil || !st.Resumed()):
					t.Errorf("h %d above the restored count: err %v, resumed %v; want resumed", tc.excess, err, st.Resumed())
				}
			})
		})
	}
}

// Only the first answer to the resumption of a restored stream may count
// beyond what was sent: a later <resumed h> that does is refused again.
func TestRestoreLooseOnlyFirstResumption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
		srv := newFakeServer(t)
		srv.smID, srv.resumable, srv.inH = r.ID, true, 205
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		if err := st.Restore(r, []Stanza{restoredMsg(200, "a")}); err != nil {
			t.Fatal(err)
		}
		c := mustDial(t, srv, st, nil)
		if !st.Resumed() {
			t.Fatal("not resumed")
		}
		sendMsg(t, st, c.sess, "m0")
		synctest.Wait()
		c.drop()
		srv.mu.Lock()
		srv.resumeReply = func(h uint32) string {
			return fmt.Sprintf(`<resumed xmlns='urn:xmpp:sm:3' previd='sm1' h='%d'/>`, h+5)
		}
		srv.mu.Unlock()
		c2, err := dial(t, srv, st, nil)
		if err == nil {
			c2.close()
		}
		if !errors.Is(err, ErrHandledCountTooHigh) {
			t.Fatalf("second resumption with h too high: %v, want ErrHandledCountTooHigh", err)
		}
	})
}

// The same after the restored stream failed to resume and a new one was
// bound.
func TestRestoreLooseEndsWithNewStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := Resumption{ID: "gone", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		if err := st.Restore(r, nil); err != nil {
			t.Fatal(err)
		}
		c := mustDial(t, srv, st, nil) // <failed/>, bind, enable
		synctest.Wait()
		if st.Resumed() || !st.Info().Resumable {
			t.Fatalf("info %+v", st.Info())
		}
		sendMsg(t, st, c.sess, "m0")
		synctest.Wait()
		c.drop()
		srv.mu.Lock()
		id := srv.smID
		srv.resumeReply = func(h uint32) string {
			return fmt.Sprintf(`<resumed xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, id, h+5)
		}
		srv.mu.Unlock()
		c2, err := dial(t, srv, st, nil)
		if err == nil {
			c2.close()
		}
		if !errors.Is(err, ErrHandledCountTooHigh) {
			t.Fatalf("resumption of the new stream with h too high: %v, want ErrHandledCountTooHigh", err)
		}
	})
}

// A server that dropped the restored stream answers <failed h> (Prosody),
// and h counts, like <resumed h>, stanzas the store did not keep: the
// message whose recorded number h covers is settled, not written again;
// the one without a number is written again.
func TestRestoreFailedHAboveSavedCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.resumeReply = func(uint32) string {
			return `<failed xmlns='urn:xmpp:sm:3' h='203'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`
		}
		rec := newRecorder()
		st := New(rec.config(Config{}))
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
		if err := st.Restore(r, []Stanza{restoredMsg(200, "a"), restoredMsg(0, "m")}); err != nil {
			t.Fatal(err)
		}
		c := mustDial(t, srv, st, nil)
		c.sc.requestAck()
		evs := waitEvents(t, rec, 3)
		synctest.Wait()
		defer c.close()
		if !slices.Equal(evs, []string{"acked:a", "resent:m", "acked:m"}) || !slices.Equal(srv.ids(), []string{"m"}) {
			t.Fatalf("reports %v, server got %v; want [acked:a resent:m acked:m], [m]", evs, srv.ids())
		}
	})
}
