package xmpptrack

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestStoreRestart: a client on the store of a previous process whose
// stream the server no longer holds re-sends the messages the server never
// acknowledged, with their ids and in order, and tracks again the ones
// that were acknowledged, in their state, so that later evidence counts.
func TestStoreRestart(t *testing.T) {
	st := openStore(t)
	srv := newPeerServer(t)
	c1 := dialPeer(t, srv, Config{Store: st})
	pc := srv.next(t)
	acked := sendAcked(t, c1, Message{To: bob, Body: "acked"})
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	var unacked []string
	for _, body := range []string{"first", "second <&> third"} {
		tr, err := c1.Send(waitCtx(t), Message{To: bob, Body: body, Payload: stanza.OriginID{ID: "x"}.TokenReader()})
		if err != nil {
			t.Fatal(err)
		}
		unacked = append(unacked, tr.ID())
		pc.nextMessage(t)
	}
	c1.Close() // as a redeploy would; the store keeps them pending
	srv.set(func(srv *peerServer) { srv.noResume = true })

	var log stateLog
	c2 := dialPeer(t, srv, Config{Store: st, OnStateChange: log.hook})
	pc2 := srv.next(t)
	for i, id := range unacked {
		e := pc2.nextMessage(t)
		if e.attr("id") != id {
			t.Fatalf("re-sent %d: %s, want id %s", i, e.String(), id)
		}
		if i == 1 && e.child("jabber:client", "body") == nil {
			t.Fatalf("re-sent without its body: %s", e.String())
		}
	}
	tr := c2.Tracker(acked.ID())
	if tr == nil || tr.State() != tracking.DeliveredToServer {
		t.Fatalf("re-loaded tracker of the acknowledged message: %v", tr)
	}
	seen := callbackRan(tr, tracking.DeliveredToRecipient)
	pc2.send(`<message from='bob@example.org/pc' id='r1'><received xmlns='%s' id='%s'/></message>`, stanza.NSReceipts, acked.ID())
	waitClosed(t, seen)
	s, err := c2.Status(waitCtx(t), acked.ID())
	if err != nil || s.State != tracking.DeliveredToRecipient || len(s.History) != 3 {
		t.Fatalf("after the restart: %+v, %v", s, err)
	}
	// The move back to DELIVERED_TO_SERVER is not reported again.
	if got := log.of(acked.ID()); len(got) != 1 || got[0] != tracking.DeliveredToRecipient {
		t.Errorf("changes reported after the restart: %v", got)
	}
	for _, id := range unacked {
		if tr := c2.Tracker(id); tr == nil || tr.State() != tracking.InTransit {
			t.Errorf("re-sent message %s: tracker %v", id, tr)
		}
	}
}

// TestStoreRestartWindowEnded: a window that ended while no process ran
// ends at load, stamped with its deadline; nothing is re-sent.
func TestStoreRestartWindowEnded(t *testing.T) {
	st := openStore(t)
	deadline := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	owner := store.Instance{Account: testJID.Bare().String(), Resource: testJID.Resourcepart()}
	b := &store.Batch{Messages: []store.Message{
		{ID: "late", Owner: owner, To: bob.String(), Raw: []byte(`<message id="late"/>`), Deadline: deadline},
		{ID: "seen", Owner: owner, To: bob.String(), Raw: []byte(`<message id="seen"/>`), Deadline: deadline},
	}, Changes: []store.Change{{ID: "seen", State: tracking.DeliveredToRecipient}}}
	if err := st.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	var log stateLog
	c, pc := newPeer(t, Config{Store: st, OnStateChange: log.hook})
	if c.Tracker("late") != nil || c.Tracker("seen") != nil {
		t.Fatal("a message whose window ended is tracked again")
	}
	s, err := c.Status(waitCtx(t), "late")
	if err != nil || s.State != tracking.TimedOut || !s.Settled || !s.History[1].At.Equal(deadline) {
		t.Fatalf("late: %+v, %v", s, err)
	}
	s, err = c.Status(waitCtx(t), "seen")
	if err != nil || s.State != tracking.DeliveredToRecipient || !s.Settled {
		t.Fatalf("seen: %+v, %v", s, err)
	}
	// The application hears of the TIMED_OUT, and of nothing else.
	if got := waitLog(waitCtx(t), &log, "late", tracking.TimedOut); len(got) != 1 || got[0] != tracking.TimedOut {
		t.Fatalf("late: OnStateChange got %v, want [TIMED_OUT]", got)
	}
	if got := log.of("seen"); len(got) != 0 {
		t.Fatalf("seen: OnStateChange got %v", got)
	}
	// Nothing was re-sent: the next message the server reads is a new one.
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "new"}); err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "new" {
		t.Fatalf("server read %s", e.String())
	}
}

// TestStoreRestartReportLost: under ReportLost, messages the server never
// acknowledged are reported ABORTED at load instead of re-sent.
func TestStoreRestartReportLost(t *testing.T) {
	st := openStore(t)
	owner := store.Instance{Account: testJID.Bare().String(), Resource: testJID.Resourcepart()}
	b := &store.Batch{Messages: []store.Message{{ID: "unacked", Owner: owner, To: bob.String(),
		Raw: []byte(`<message xmlns="jabber:client" to="bob@example.org" id="unacked"><body>x</body></message>`)}}}
	if err := st.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	aborted := make(chan struct{})
	c, pc := newPeer(t, Config{Store: st, StreamManagement: sm.Config{Policy: sm.ReportLost},
		// The store is handed a change before this callback runs.
		OnStateChange: func(tr *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
			if tr.ID() == "unacked" && to == tracking.Aborted {
				close(aborted)
			}
		}})
	waitClosed(t, aborted)
	s, err := c.Status(waitCtx(t), "unacked")
	if err != nil || s.State != tracking.Aborted || !s.Settled {
		t.Fatalf("unacknowledged message under ReportLost: %+v, %v", s, err)
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "new"}); err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "new" {
		t.Fatalf("server read %s: the lost message was re-sent", e.String())
	}
}

// TestStoreRestartResumes: a client restarted on the store resumes the
// previous stream while the server holds it: the server's <resumed h>
// settles what it got, only the rest is written again (same id), and the
// re-loaded trackers take later evidence. A second client on the same
// store and account while the first lives is refused.
func TestStoreRestartResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "track.db")
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	c1 := dialPeer(t, srv, Config{Store: openStorePath(t, path)})
	pc := srv.next(t)
	var ids []string
	for range 3 {
		tr, err := c1.Send(waitCtx(t), Message{To: bob, Body: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tr.ID())
		if e := pc.nextMessage(t); e.attr("id") != tr.ID() {
			t.Fatalf("server got %s, want %s", e.attr("id"), tr.ID())
		}
	}
	cfg := Config{Store: openStorePath(t, path), Addr: srv.l.Addr().String(), AllowPlaintext: true}
	if _, err := Dial(waitCtx(t), testJID, peerPassword, &cfg); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Dial on a locked store: %v, want store.ErrLocked", err)
	}
	c1.Close()
	// The server got the first two of the three messages only.
	srv.set(func(srv *peerServer) { srv.inH--; srv.noAcks = false })

	c2 := dialPeer(t, srv, Config{Store: openStorePath(t, path)})
	pc = srv.next(t)
	if !pc.resumed {
		t.Fatal("the restarted client did not resume the stream")
	}
	if e := pc.nextMessage(t); e.attr("id") != ids[2] {
		t.Fatalf("retransmitted %s, want %s", e.attr("id"), ids[2])
	}
	for i, id := range ids {
		tr := c2.Tracker(id)
		if tr == nil {
			t.Fatalf("message %d not re-loaded", i)
		}
		waitState(t, tr, tracking.DeliveredToServer)
	}
	seen := callbackRan(c2.Tracker(ids[0]), tracking.DeliveredToRecipient)
	pc.send(`<message from='bob@example.org/pc' id='r1'><received xmlns='%s' id='%s'/></message>`, stanza.NSReceipts, ids[0])
	waitClosed(t, seen)
	s, err := c2.Status(waitCtx(t), ids[0])
	if err != nil || len(s.History) != 3 || s.History[1].State != tracking.DeliveredToServer ||
		s.History[2].State != tracking.DeliveredToRecipient || s.History[2].From != "bob@example.org/pc" {
		t.Fatalf("status after the restart: %+v, %v", s, err)
	}
}

// TestStoreOtherAccount: a store whose slot belongs to another account is
// refused before anything is sent.
func TestStoreOtherAccount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "track.db")
	srv := newPeerServer(t)
	dialPeer(t, srv, Config{Store: openStorePath(t, path)}).Close()
	cfg := Config{Store: openStorePath(t, path), Addr: srv.l.Addr().String(), AllowPlaintext: true}
	if _, err := Dial(waitCtx(t), jid.MustParse("mallory@localhost"), peerPassword, &cfg); !errors.Is(err, ErrStoreAccount) {
		t.Fatalf("Dial of another account: %v, want ErrStoreAccount", err)
	}
}

// openStorePath opens an SQLite store at path, closed when the test ends.
func openStorePath(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestStoreRestartResumeBreaks: when the server hangs up on the stored
// stream's <resume/>, Dial binds a new stream and re-sends the
// unacknowledged message with its id, instead of failing.
func TestStoreRestartResumeBreaks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "track.db")
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	c1 := dialPeer(t, srv, Config{Store: openStorePath(t, path)})
	pc := srv.next(t)
	tr, err := c1.Send(waitCtx(t), Message{To: bob, Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	c1.Close()
	srv.set(func(srv *peerServer) { srv.stall = "resume-hangup"; srv.noAcks = false })
	c2 := dialPeer(t, srv, Config{Store: openStorePath(t, path)})
	pc = srv.next(t)
	if pc.resumed {
		t.Fatal("resumed")
	}
	if e := pc.nextMessage(t); e.attr("id") != tr.ID() {
		t.Fatalf("re-sent %s, want %s", e.attr("id"), tr.ID())
	}
	waitState(t, c2.Tracker(tr.ID()), tracking.DeliveredToServer)
}

// TestStoreRestartSettledLast: a message settled by a receipt before the
// server acknowledged it still counts among the stanzas written: a message
// written after it whose number was never recorded is numbered after it,
// so the server's <resumed h>, which covers both, is not taken for too
// high, and the stream is resumed with nothing written again.
func TestStoreRestartSettledLast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "track.db")
	st := openStorePath(t, path)
	owner := store.Instance{Account: testJID.String()}
	raw := func(id string) []byte {
		return []byte(`<message xmlns='jabber:client' type='chat' to='bob@example.org' id='` + id + `'><body>hi</body></message>`)
	}
	// Written: presence 1, m1 2, m2 3 (a receipt settled it first), m3 4
	// (its number not recorded when the process died).
	err := st.Commit(waitCtx(t), &store.Batch{
		Messages: []store.Message{
			{ID: "m1", Owner: owner, To: "bob@example.org", Raw: raw("m1"), State: tracking.InTransit},
			{ID: "m2", Owner: owner, To: "bob@example.org", Raw: raw("m2"), State: tracking.InTransit},
			{ID: "m3", Owner: owner, To: "bob@example.org", Raw: raw("m3"), State: tracking.InTransit},
		},
		Written:  []store.Written{{ID: "m1", Seq: 2}, {ID: "m2", Seq: 3}},
		Changes:  []store.Change{{ID: "m2", State: tracking.DeliveredToRecipient, At: time.Now(), Evidence: store.Evidence{From: "bob@example.org/pc"}}},
		Sessions: []store.Session{{Owner: owner, JID: peerFullJID, ID: "sm-stored", Outbound: 3, Acked: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 4 })
	c := dialPeer(t, srv, Config{Store: st})
	pc := srv.next(t)
	if !pc.resumed {
		t.Fatal("the restarted client did not resume the stream")
	}
	for _, id := range []string{"m1", "m3"} {
		waitState(t, c.Tracker(id), tracking.DeliveredToServer)
	}
	if s := c.Stats(); s.Unacked != 0 || s.Resumptions != 1 || s.Reconnections != 0 {
		t.Fatalf("after the restart: %+v; want the first connection resumed, nothing unacknowledged", s)
	}
}

// TestStoreRestartResumeRetried: when the server hangs up on the stored
// stream's <resume/> once, Dial resumes again after a short back-off, and
// the stream is resumed: the server's h settles the message, which is not
// written again.
func TestStoreRestartResumeRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "track.db")
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	c1 := dialPeer(t, srv, Config{Store: openStorePath(t, path)})
	pc := srv.next(t)
	tr, err := c1.Send(waitCtx(t), Message{To: bob, Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	c1.Close()
	srv.set(func(srv *peerServer) { srv.stall = "resume-hangup"; srv.noAcks = false })
	go func() {
		<-srv.stalled // the first <resume/> was hung up on: the next one works
		srv.set(func(srv *peerServer) { srv.stall = "" })
	}()
	c2 := dialPeer(t, srv, Config{Store: openStorePath(t, path)})
	pc = srv.next(t)
	if !pc.resumed {
		t.Fatal("not resumed")
	}
	waitState(t, c2.Tracker(tr.ID()), tracking.DeliveredToServer)
	if s := c2.Stats(); s.Resumptions != 1 || s.Unacked != 0 {
		t.Fatalf("after the restart: %+v", s)
	}
	select {
	case e := <-pc.in:
		if e.XMLName.Local == "message" {
			t.Fatalf("wrote %s again", e.attr("id"))
		}
	default:
	}
}

// TestStoreRestartAboveMaxPending: Dial tracks every unsettled message
// the store kept, also more than Config.MaxPending: each message the server
// never got is written again on the resumed stream and tracked. Before,
// the messages above the bound were neither tracked nor written again, and
// the resumed stream gave their stored numbers to later stanzas, whose
// acks then read as the server's acks of them at the next restart (review
// hunt-dur 2).
func TestStoreRestartAboveMaxPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "track.db")
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	c1 := dialPeer(t, srv, Config{Store: openStorePath(t, path), NoCarbons: true})
	pc := srv.next(t)
	var ids []string
	for range 3 {
		tr, err := c1.Send(waitCtx(t), Message{To: bob, Body: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tr.ID())
		if e := pc.nextMessage(t); e.attr("id") != tr.ID() {
			t.Fatalf("server got %s, want %s", e.attr("id"), tr.ID())
		}
	}
	c1.Close()
	// The server got the first of the three only.
	srv.set(func(srv *peerServer) { srv.inH -= 2; srv.noAcks = false })

	c2 := dialPeer(t, srv, Config{Store: openStorePath(t, path), NoCarbons: true, MaxPending: 1})
	defer c2.Close()
	pc = srv.next(t)
	if !pc.resumed {
		t.Fatal("the restarted client did not resume the stream")
	}
	for _, id := range ids[1:] {
		if e := pc.nextMessage(t); e.attr("id") != id {
			t.Fatalf("written again: %s, want %s", e.attr("id"), id)
		}
	}
	for i, id := range ids {
		tr := c2.Tracker(id)
		if tr == nil {
			t.Fatalf("message %d of 3 not tracked after the restart", i+1)
		}
		waitState(t, tr, tracking.DeliveredToServer)
	}
	if _, err := c2.TrySend(waitCtx(t), Message{To: bob, Body: "new"}); !errors.Is(err, tracking.ErrTooManyPending) {
		t.Errorf("TrySend with 3 re-loaded messages pending, MaxPending 1: %v, want ErrTooManyPending", err)
	}
}

// TestStoreRestartWindowsEndedAboveMaxPending: Dial tells the application
// of every TIMED_OUT of a window that ended while no process ran, also
// when the pending messages it re-loaded fill Config.MaxPending: Dial has no
// later round to tell it in.
func TestStoreRestartWindowsEndedAboveMaxPending(t *testing.T) {
	st := openStore(t)
	ended := time.Now().Add(-time.Hour)
	owner := store.Instance{Account: testJID.Bare().String(), Resource: testJID.Resourcepart()}
	b := &store.Batch{Messages: []store.Message{
		{ID: "open", Owner: owner, To: bob.String(), Raw: []byte(`<message id="open"/>`), Deadline: time.Now().Add(time.Hour)},
		{ID: "late1", Owner: owner, To: bob.String(), Raw: []byte(`<message id="late1"/>`), Deadline: ended},
		{ID: "late2", Owner: owner, To: bob.String(), Raw: []byte(`<message id="late2"/>`), Deadline: ended},
	}}
	if err := st.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	var log stateLog
	c, _ := newPeer(t, Config{Store: st, MaxPending: 1, OnStateChange: log.hook})
	if c.Tracker("open") == nil {
		t.Fatal("the open message is not tracked again")
	}
	for _, id := range []string{"late1", "late2"} {
		if got := waitLog(waitCtx(t), &log, id, tracking.TimedOut); len(got) != 1 || got[0] != tracking.TimedOut {
			t.Errorf("%s: OnStateChange got %v, want [TIMED_OUT]", id, got)
		}
	}
}
