package sm

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"mellium.im/xmpp/jid"
)

// Restore numbers stored stanzas by their Seq, leaves gaps for numbers no
// stored stanza claims (acknowledged and retransmitted as nothing), counts
// the saved outbound count as written (stanzas the store did not keep) and
// numbers stanzas whose Seq was never recorded after all of them.
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
	if r.ID != "sm1" || r.Handled != 7 || r.Acked != 10 || r.Sent != 15 {
		t.Fatalf("restored %+v", r)
	}
	st.mu.Lock()
	_, tooHigh := st.ackLocked(14)
	st.mu.Unlock()
	st.deliver()
	if tooHigh || len(acked) != 2 || acked[0] != "a" || acked[1] != "b" {
		t.Fatalf("h=14 acknowledged %v (too high: %v), want [a b]", acked, tooHigh)
	}
	st.mu.Lock()
	left := st.queue.drain(nil)
	st.mu.Unlock()
	if len(left) != 1 || left[0].id != "c" || left[0].seq != 15 {
		t.Fatalf("left %+v, want c as 15", left)
	}
	if err := st.Restore(Resumption{}, nil); !errors.Is(err, ErrRestore) {
		t.Fatalf("second Restore: %v", err)
	}
}

// restoredResume restores unacked into a State, lets the scripted server
// answer the resumption with <resumed h/>, asks for an ack and returns the
// State's reports (acked first) and the ids the server received.
func restoredResume(t *testing.T, r Resumption, h uint32, unacked []Stanza, reports int) (evs, got []string) {
	return restoredResumeConfig(t, Config{}, r, h, unacked, reports)
}

func restoredResumeConfig(t *testing.T, cfg Config, r Resumption, h uint32, unacked []Stanza, reports int) (evs, got []string) {
	srv := newFakeServer(t)
	srv.smID, srv.resumable, srv.inH = r.ID, true, h
	rec := newRecorder()
	st := New(rec.config(cfg))
	if err := st.Restore(r, unacked); err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, srv, st, nil)
	if !st.Resumed() {
		t.Fatal("not resumed")
	}
	c.sc.requestAck()
	evs = waitEvents(t, rec, reports)
	synctest.Wait()
	if info := st.Info(); info.Unacked != 0 {
		t.Fatalf("after the ack: %+v", info)
	}
	got = srv.ids()
	c.close()
	return evs, got
}

func restoredMsg(seq uint32, id string) Stanza {
	return Stanza{Seq: seq, Name: "message", ID: id, To: "peer@example.org",
		Raw: []byte("<message xmlns='jabber:client' to='peer@example.org' id='" + id + "' type='chat'><body>hi</body></message>")}
}

// A message written ahead but whose number was never recorded, restored
// after a stanza the store does not keep (a receipt written as 201): the
// server's h covers the number the message would get, yet it never got the
// message. It is sent again, never taken as received.
func TestRestoreUnknownCoveredIsResent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
		evs, got := restoredResume(t, r, 201, []Stanza{restoredMsg(200, "a"), restoredMsg(0, "m")}, 2)
		if !slices.Equal(evs, []string{"acked:a", "acked:m"}) || !slices.Equal(got, []string{"m"}) {
			t.Fatalf("reports %v, server got %v; want [acked:a acked:m], [m]", evs, got)
		}
	})
}

// Stanzas without a recorded number may have reached the wire in any
// order: once h covers the number guessed for one of them, each of them is
// reported as possibly received (the recipient may get it twice), not only
// the ones whose guessed number h covers.
func TestRestoreUnknownAllReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			h    uint32
			want []string
		}{
			{200, nil}, // h covers no guessed number: none reached the server
			{201, []string{"x", "y", "z"}},
			{203, []string{"x", "y", "z"}},
		} {
			var buf bytes.Buffer
			cfg := Config{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
			r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
			unacked := []Stanza{restoredMsg(200, "a"), restoredMsg(0, "x"), restoredMsg(0, "y"), restoredMsg(0, "z")}
			_, got := restoredResumeConfig(t, cfg, r, tc.h, unacked, 4)
			if !slices.Equal(got, []string{"x", "y", "z"}) {
				t.Fatalf("h=%d: server got %v, want [x y z]", tc.h, got)
			}
			var reported []string
			for line := range strings.Lines(buf.String()) {
				if _, rest, ok := strings.Cut(line, "may have reached the server"); ok {
					_, id, _ := strings.Cut(rest, " id=")
					id, _, _ = strings.Cut(id, " ")
					reported = append(reported, id)
				}
			}
			if !slices.Equal(reported, tc.want) {
				t.Errorf("h=%d: reported as possibly received %v, want %v", tc.h, reported, tc.want)
			}
		}
	})
}

// A restored count misses the stanzas a store does not keep written after
// it was saved (a receipt, the carbons IQ): a <resumed h> above it resumes
// the stream, counting those as gaps, and every stanza without a recorded
// number, which h then covers, is sent again as possibly received, never
// taken as received. Within a process the same h is refused (see
// TestResumedInvalid).
func TestRestoreHAboveSavedCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		cfg := Config{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 199, Sent: 200}
		unacked := []Stanza{restoredMsg(200, "a"), restoredMsg(0, "x"), restoredMsg(0, "y")}
		evs, got := restoredResumeConfig(t, cfg, r, 205, unacked, 3)
		if !slices.Equal(evs, []string{"acked:a", "acked:x", "acked:y"}) || !slices.Equal(got, []string{"x", "y"}) {
			t.Fatalf("reports %v, server got %v; want [acked:a acked:x acked:y], [x y]", evs, got)
		}
		if n := strings.Count(buf.String(), "may have reached the server"); n != 2 {
			t.Fatalf("%d stanzas reported as possibly received, want 2:\n%s", n, buf.String())
		}
	})
}

// Without a stanza whose number is unknown, the restored numbers are
// exact: h settles what it covers (stanzas the store did not keep in the
// gaps and up to Sent) and nothing is sent again.
func TestRestoreKnownExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 10, Sent: 16}
		unacked := []Stanza{restoredMsg(12, "a"), restoredMsg(14, "b"), restoredMsg(16, "c")}
		evs, got := restoredResume(t, r, 14, unacked, 3)
		if !slices.Equal(evs, []string{"acked:a", "acked:b", "acked:c"}) || !slices.Equal(got, []string{"c"}) {
			t.Fatalf("reports %v, server got %v; want [acked:a acked:b acked:c], [c]", evs, got)
		}
	})
}

// The gap up to Sent is counted before the stanzas without a number: with
// h = Sent they are all sent again, whether or not h could cover them.
func TestRestoreGapBeforeUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 10, Sent: 14}
		unacked := []Stanza{restoredMsg(12, "a"), restoredMsg(0, "x"), restoredMsg(0, "y")}
		for _, h := range []uint32{14, 15, 16} {
			evs, got := restoredResume(t, r, h, unacked, 3)
			if !slices.Equal(evs, []string{"acked:a", "acked:x", "acked:y"}) || !slices.Equal(got, []string{"x", "y"}) {
				t.Fatalf("h=%d: reports %v, server got %v; want [acked:a acked:x acked:y], [x y]", h, evs, got)
			}
		}
	})
}

// A restored Told above the restored inbound count is kept: the
// resumption claims it, never less than an ack said (Prosody 0.12 ends a
// stream whose resumption claims less).
func TestRestoreTold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.smID, srv.resumable = "sm1", true
		st := New(Config{})
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Handled: 5, Told: 7}
		if err := st.Restore(r, nil); err != nil {
			t.Fatal(err)
		}
		if got := st.Resumption().Told; got != 7 {
			t.Errorf("Told after Restore: %d, want 7", got)
		}
		c := mustDial(t, srv, st, nil)
		if !st.Resumed() {
			t.Fatal("not resumed")
		}
		srv.mu.Lock()
		resumedAt := slices.Clone(srv.resumedAt)
		srv.mu.Unlock()
		if !slices.Equal(resumedAt, []uint32{7}) {
			t.Errorf("<resume h/>: %v, want [7] (the restored Told)", resumedAt)
		}
		if info := st.Info(); info.Handled != 7 {
			t.Errorf("inbound count after resuming: %d, want 7", info.Handled)
		}
		c.close()
	})
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

// OnWritten reports a stanza's number before Resumption counts it, so that
// a store that reads the Resumption and then the numbers reported so far
// saves every number its Sent covers. (A Resumption taken while OnWritten
// runs waits for it: the State's lock is held.)
func TestOnWrittenBeforeCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		var st *State
		var early []uint32
		st = New(Config{OnWritten: func(s Stanza) {
			if !st.mu.TryLock() {
				return // a Resumption would wait for the report to end
			}
			st.mu.Unlock()
			if r := st.Resumption(); int32(r.Sent-s.Seq) >= 0 {
				early = append(early, s.Seq)
			}
		}})
		c := mustDial(t, srv, st, nil)
		for i := range 3 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		synctest.Wait()
		if len(early) > 0 {
			t.Fatalf("Resumption counted %v before their OnWritten returned", early)
		}
		c.close()
	})
}

// The h of <failed/> does not settle a stanza restored without a number
// either: the Policy re-sends it on the new stream.
func TestRestoreUnknownCoveredByFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.resumeReply = func(uint32) string {
			return `<failed xmlns='urn:xmpp:sm:3' h='201'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`
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
		if !slices.Equal(evs, []string{"acked:a", "resent:m", "acked:m"}) || !slices.Equal(srv.ids(), []string{"m"}) {
			t.Fatalf("reports %v, server got %v; want [acked:a resent:m acked:m], [m]", evs, srv.ids())
		}
		c.close()
	})
}

// A restored stanza whose Raw is not one whole element (a damaged store)
// is settled by the server's h like any other; above h it is reported lost
// instead of being written again (a write of it would fail half way and
// cut the connection), and the stream stays up for the others.
func TestRestoreDamagedRaw(t *testing.T) {
	damaged := func(seq uint32, id string) Stanza {
		s := restoredMsg(seq, id)
		s.Raw = s.Raw[:len(s.Raw)-5] // cut short
		return s
	}
	synctest.Test(t, func(t *testing.T) {
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 10, Sent: 14}
		unacked := []Stanza{restoredMsg(11, "a"), damaged(12, "b"), restoredMsg(13, "c"), damaged(14, "d")}
		// h 12 covers b: acked; d is above it: lost, never written.
		evs, got := restoredResume(t, r, 12, unacked, 4)
		slices.Sort(evs)
		if want := []string{"acked:a", "acked:b", "acked:c", "lost:d"}; !slices.Equal(evs, want) {
			t.Errorf("reports %v, want %v", evs, want)
		}
		if !slices.Equal(got, []string{"c"}) {
			t.Errorf("server got %v, want [c]", got)
		}
	})
	// After a failed resumption the messages above its h are re-sent on the
	// new stream: a damaged one is reported lost instead.
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.resumeReply = func(uint32) string {
			return `<failed xmlns='urn:xmpp:sm:3' h='10'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`
		}
		rec := newRecorder()
		st := New(rec.config(Config{}))
		r := Resumption{ID: "sm1", JID: jid.MustParse("me@example.org/r"), Acked: 10, Sent: 12}
		if err := st.Restore(r, []Stanza{damaged(11, "a"), restoredMsg(12, "b")}); err != nil {
			t.Fatal(err)
		}
		c := mustDial(t, srv, st, nil)
		c.sc.requestAck()
		evs := waitEvents(t, rec, 3)
		synctest.Wait()
		if !slices.Equal(evs, []string{"lost:a", "resent:b", "acked:b"}) || !slices.Equal(srv.ids(), []string{"b"}) {
			t.Fatalf("reports %v, server got %v; want [lost:a resent:b acked:b], [b]", evs, srv.ids())
		}
		c.close()
	})
	for _, raw := range []string{"<message/>", " <message id='a'><body>x</body></message>\n", "<a:message xmlns:a='jabber:client'/>"} {
		if !oneElement([]byte(raw)) {
			t.Errorf("oneElement(%q) = false", raw)
		}
	}
	for _, raw := range []string{"", "  ", "<message>", "<message/><iq/>", "x<message/>", "<message/>x", "<message></iq>", "<!-- x --><message/>", "<message/><?pi x?>"} {
		if oneElement([]byte(raw)) {
			t.Errorf("oneElement(%q) = true", raw)
		}
	}
}
