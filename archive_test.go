package xmpptrack

import (
	"context"
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// ambiguousStore holds what a process killed mid-send leaves: the
// presence (1, acknowledged) and m1 (2, recorded) written, m2 and m3
// written ahead with no number recorded, and the stream sm-stored.
func ambiguousStore(t *testing.T) store.Store {
	t.Helper()
	return ambiguousStoreAt(t, time.Time{})
}

// ambiguousStoreAt is ambiguousStore with the messages written ahead at
// created (the store's time when zero).
func ambiguousStoreAt(t *testing.T, created time.Time) store.Store {
	t.Helper()
	st := openStorePath(t, filepath.Join(t.TempDir(), "track.db"))
	owner := store.Instance{Account: testJID.String()}
	raw := func(id string) []byte {
		return []byte(`<message xmlns='jabber:client' type='chat' to='bob@example.org' id='` + id + `'><body>hi</body><origin-id xmlns='urn:xmpp:sid:0' id='` + id + `'/></message>`)
	}
	var msgs []store.Message
	for _, id := range []string{"m1", "m2", "m3"} {
		msgs = append(msgs, store.Message{ID: id, Owner: owner, To: "bob@example.org", Raw: raw(id), State: tracking.InTransit, Created: created})
	}
	err := st.Commit(waitCtx(t), &store.Batch{
		Messages: msgs,
		Written:  []store.Written{{ID: "m1", Seq: 2}},
		Sessions: []store.Session{{Owner: owner, JID: peerFullJID, ID: "sm-stored", Outbound: 2, Acked: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// resumeFindsM2 dials st (see ambiguousStore) against a server that
// resumes sm-stored with h=2: the first resumption after the restart holds
// back m2 and m3 (restored, not covered by h) instead of retransmitting
// them, and looks them up in the archive, which has m2; only m3 is
// written again, and m1 to m3 reach DELIVERED_TO_SERVER. It returns the
// client, closed when the test ends, or nil when Dial failed (the test
// has failed then).
func resumeFindsM2(t *testing.T, st store.Store) *Client {
	t.Helper()
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 2 })
	dialed := dialAsync(t, srv, Config{Store: st})
	pc := srv.next(t)
	iq := pc.next(t)
	q := iq.child("urn:xmpp:mam:2", "query")
	if q == nil {
		t.Fatalf("wrote %s; want an archive query first (nothing retransmitted)", iq.String())
	}
	pc.send(archiveResult(q.attr("queryid"), "m2"))
	pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>`, iq.attr("id"))
	if e := pc.nextMessage(t); e.attr("id") != "m3" {
		t.Fatalf("wrote %s after the query, want m3 (not in the archive)", e.String())
	}
	c := <-dialed
	if c == nil {
		return nil
	}
	t.Cleanup(func() { c.Close() })
	for _, id := range []string{"m1", "m2", "m3"} {
		waitState(t, c.Tracker(id), tracking.DeliveredToServer)
	}
	return c
}

// dialAsync dials srv on another goroutine: Dial waits for the archive
// check, which the test answers meanwhile.
func dialAsync(t *testing.T, srv *peerServer, cfg Config) <-chan *Client {
	t.Helper()
	r := dialResult(t, srv, cfg)
	ch := make(chan *Client, 1)
	go func() {
		o := <-r
		if o.err != nil {
			t.Errorf("Dial: %v", o.err)
			close(ch)
			return
		}
		ch <- o.c
	}()
	return ch
}

// dialOutcome is what Dial returned.
type dialOutcome struct {
	c   *Client
	err error
}

// dialResult dials srv as dialAsync does and reports Dial's result, error
// included.
func dialResult(t *testing.T, srv *peerServer, cfg Config) <-chan dialOutcome {
	t.Helper()
	atPeer(t, srv, &cfg)
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	ch := make(chan dialOutcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		c, err := Dial(ctx, testJID, peerPassword, &cfg)
		ch <- dialOutcome{c, err}
	}()
	return ch
}

// archiveResult is a result of our own archive holding a message we sent.
func archiveResult(queryID, id string) string {
	return `<message to='` + peerFullJID + `' from='alice@localhost'><result xmlns='urn:xmpp:mam:2' queryid='` + queryID + `' id='arch-` + id + `'>` +
		`<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>` +
		`<message xmlns='jabber:client' from='` + peerFullJID + `' to='bob@example.org' type='chat' id='` + id + `'><body>hi</body>` +
		`<origin-id xmlns='urn:xmpp:sid:0' id='` + id + `'/></message></forwarded></result></message>`
}

// After a resumed restart whose h (3) covers the number guessed for m2,
// m2 and m3 are ambiguous: the client looks them up in the account's
// archive before Dial returns. A message found there is settled as
// DELIVERED_TO_SERVER and never written again; one not found, or all of
// them when the query fails, times out or the server has no archive, is
// written again with its id. Nothing else reaches the application.
func TestArchiveSettlesAmbiguous(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  func(pc *peerConn, iqID, queryID string)
		resent  []string
		foundN  int
		timeout time.Duration
	}{
		{"found", func(pc *peerConn, iqID, queryID string) {
			// A result from another sender with m3's id proves nothing.
			pc.send(archiveResult(queryID, "m2"))
			pc.send(`<message to='%s' from='alice@localhost'><result xmlns='urn:xmpp:mam:2' queryid='%s' id='x'><forwarded xmlns='urn:xmpp:forward:0'>`+
				`<message xmlns='jabber:client' from='bob@example.org/pc' to='%s' type='chat' id='m3'><body>hi</body></message></forwarded></result></message>`,
				peerFullJID, queryID, peerFullJID)
			pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'><set xmlns='http://jabber.org/protocol/rsm'><first>arch-m2</first><last>x</last></set></fin></iq>`, iqID)
		}, []string{"m3"}, 1, 0},
		{"not found", func(pc *peerConn, iqID, queryID string) {
			pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'><set xmlns='http://jabber.org/protocol/rsm'/></fin></iq>`, iqID)
		}, []string{"m2", "m3"}, 0, 0},
		{"query error", func(pc *peerConn, iqID, queryID string) {
			pc.send(archiveResult(queryID, "m2")) // a partial answer, then the error: nothing proved
			pc.send(`<iq type='error' id='%s'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, iqID)
		}, []string{"m2", "m3"}, 0, 0},
		{"timeout", func(pc *peerConn, iqID, queryID string) {}, []string{"m2", "m3"}, 0, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newPeerServer(t)
			srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 3 })
			logs := &logRecorder{}
			app := newAppLog()
			cfg := Config{Store: ambiguousStore(t), Handler: app, Logger: slog.New(logs)}
			cfg.archiveTimeout = tc.timeout
			dialed := dialAsync(t, srv, cfg)
			pc := srv.next(t)
			if !pc.resumed {
				t.Fatal("not resumed")
			}
			iq := pc.next(t)
			q := iq.child("urn:xmpp:mam:2", "query")
			if iq.XMLName.Local != "iq" || iq.attr("type") != "set" || q == nil {
				t.Fatalf("wrote %s, want an archive query", iq.String())
			}
			with := ""
			if x := q.child("jabber:x:data", "x"); x != nil {
				for _, f := range x.Children {
					if f.attr("var") == "with" && len(f.Children) > 0 {
						with = f.Children[0].Text
					}
				}
			}
			if with != "bob@example.org" {
				t.Fatalf("query %s: with %q, want bob@example.org", iq.String(), with)
			}
			tc.answer(pc, iq.attr("id"), q.attr("queryid"))
			c := <-dialed
			if c == nil {
				return
			}
			defer c.Close()
			tr, err := c.Send(waitCtx(t), Message{To: bob, Body: "new", ID: "m4"})
			if err != nil {
				t.Fatal(err)
			}
			var written []string
			for {
				e := pc.nextMessage(t)
				if id := e.attr("id"); id != "m4" {
					written = append(written, id)
					continue
				}
				break
			}
			if !slices.Equal(written, tc.resent) {
				t.Fatalf("written again before m4: %v, want %v", written, tc.resent)
			}
			for _, id := range []string{"m1", "m2", "m3"} {
				waitState(t, c.Tracker(id), tracking.DeliveredToServer)
			}
			waitState(t, tr, tracking.DeliveredToServer)
			if n := logs.count("is in the account's archive"); n != tc.foundN {
				t.Errorf("%d found in the archive, want %d", n, tc.foundN)
			}
			if n := logs.count("not found in the account's archive"); n != len(tc.resent) {
				t.Errorf("%d logged as written again, want %d", n, len(tc.resent))
			}
			if app.saw("") || app.saw("x") {
				t.Error("an archive result reached the application")
			}
		})
	}
}

// The check pages through the archive: an incomplete page is followed by a
// query for the page after its last result, until the messages are found.
func TestArchivePages(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 3 })
	dialed := dialAsync(t, srv, Config{Store: ambiguousStore(t)})
	pc := srv.next(t)
	after := func(q *element) string {
		if set := q.child("http://jabber.org/protocol/rsm", "set"); set != nil {
			if a := set.child("http://jabber.org/protocol/rsm", "after"); a != nil {
				return a.Text
			}
		}
		return ""
	}
	iq := pc.next(t)
	q := iq.child("urn:xmpp:mam:2", "query")
	if q == nil || after(q) != "" {
		t.Fatalf("first query %s", iq.String())
	}
	pc.send(archiveResult(q.attr("queryid"), "m2"))
	pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><first>a</first><last>p1</last></set></fin></iq>`, iq.attr("id"))
	iq = pc.next(t)
	q = iq.child("urn:xmpp:mam:2", "query")
	if q == nil || after(q) != "p1" {
		t.Fatalf("second query %s, want one after p1", iq.String())
	}
	pc.send(archiveResult(q.attr("queryid"), "m3"))
	pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'><set xmlns='http://jabber.org/protocol/rsm'><first>b</first><last>p2</last></set></fin></iq>`, iq.attr("id"))
	c := <-dialed
	if c == nil {
		return
	}
	defer c.Close()
	for _, id := range []string{"m2", "m3"} {
		waitState(t, c.Tracker(id), tracking.DeliveredToServer)
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob, Body: "new", ID: "m4"}); err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "m4" {
		t.Fatalf("wrote %s, want nothing again before m4", e.attr("id"))
	}
}

// A group chat message is never looked up in the account's archive (rooms
// keep their own): it is written again, with that reason, and no query is
// made for it.
func TestArchiveSkipsGroupChat(t *testing.T) {
	c := &Client{}
	room := sm.Stanza{Name: "message", ID: "g1", To: "room@muc.example.org", Sent: time.Now(),
		Raw: []byte(`<message xmlns='jabber:client' type='groupchat' to='room@muc.example.org' id='g1'><body>hi</body></message>`)}
	found, why := c.searchArchive(t.Context(), conn{}, []sm.Stanza{room})
	if found["g1"] || why["g1"] != errRoomArchived {
		t.Fatalf("found %v, reason %v; want not found, %v", found["g1"], why["g1"], errRoomArchived)
	}
	if isGroupChat([]byte(`<message xmlns='jabber:client' type='chat' to='bob@example.org'/>`)) {
		t.Fatal("a chat message taken for group chat")
	}
}

// The archive is searched from the messages' write-ahead time, less the
// clock skew allowed, up to the time of the check: a message may reach the
// wire long after it was written ahead (a write waiting for a reconnect,
// paced re-sends, a number voided and written on a later stream), and the
// server archives it then.
func TestArchiveSearchesUntilNow(t *testing.T) {
	created := time.Now().Add(-time.Minute).Truncate(time.Second)
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 3 })
	dialed := dialAsync(t, srv, Config{Store: ambiguousStoreAt(t, created)})
	pc := srv.next(t)
	iq := pc.next(t)
	asked := time.Now()
	q := iq.child("urn:xmpp:mam:2", "query")
	if q == nil {
		t.Fatalf("wrote %s, want an archive query", iq.String())
	}
	field := func(name string) time.Time {
		if x := q.child("jabber:x:data", "x"); x != nil {
			for _, f := range x.Children {
				if f.attr("var") == name && len(f.Children) > 0 {
					at, err := time.Parse(time.RFC3339, f.Children[0].Text)
					if err != nil {
						t.Fatalf("query %s: %s: %v", iq.String(), name, err)
					}
					return at
				}
			}
		}
		return time.Time{}
	}
	if start := field("start"); start.IsZero() || start.After(created.Add(-archiveSkew)) {
		t.Errorf("query %s: start %v, want at most %v", iq.String(), start, created.Add(-archiveSkew))
	}
	if end := field("end"); !end.IsZero() && end.Before(asked.Truncate(time.Second)) {
		t.Errorf("query %s: end %v, want none or at least %v (the time of the check)", iq.String(), end, asked)
	}
	pc.send(archiveResult(q.attr("queryid"), "m2"))
	pc.send(archiveResult(q.attr("queryid"), "m3"))
	pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>`, iq.attr("id"))
	c := <-dialed
	if c == nil {
		return
	}
	defer c.Close()
	for _, id := range []string{"m2", "m3"} {
		waitState(t, c.Tracker(id), tracking.DeliveredToServer)
	}
}

// numberedStore holds what a process killed with m1 to m3 in flight
// leaves, every number recorded: the presence (1, acknowledged), m1 (2),
// m2 (3) and m3 (4), and the stream sm-stored.
func numberedStore(t *testing.T) store.Store {
	t.Helper()
	st := openStorePath(t, filepath.Join(t.TempDir(), "track.db"))
	seedNumbered(t, st)
	return st
}

// seedNumbered commits to st what numberedStore holds.
func seedNumbered(t *testing.T, st store.Store) {
	t.Helper()
	owner := store.Instance{Account: testJID.String()}
	var msgs []store.Message
	for _, id := range []string{"m1", "m2", "m3"} {
		msgs = append(msgs, store.Message{ID: id, Owner: owner, To: "bob@example.org", State: tracking.InTransit,
			Raw: []byte(`<message xmlns='jabber:client' type='chat' to='bob@example.org' id='` + id + `'><body>hi</body></message>`)})
	}
	err := st.Commit(waitCtx(t), &store.Batch{
		Messages: msgs,
		Written:  []store.Written{{ID: "m1", Seq: 2}, {ID: "m2", Seq: 3}, {ID: "m3", Seq: 4}},
		Sessions: []store.Session{{Owner: owner, JID: peerFullJID, ID: "sm-stored", Outbound: 4, Acked: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// On the first resumption after a restart, the restored messages that h
// does not cover, although their numbers were recorded, are held back
// and looked up in the archive like the unnumbered ones: the session of
// the killed process's connection may have routed them after the server
// answered with h (ejabberd). Found, a message is settled and not written
// again; not found, it is written again, before anything sent after Dial.
func TestArchiveChecksNumberedAboveH(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 2 })
	logs := &logRecorder{}
	dialed := dialAsync(t, srv, Config{Store: numberedStore(t), Logger: slog.New(logs)})
	pc := srv.next(t)
	if !pc.resumed {
		t.Fatal("not resumed")
	}
	iq := pc.next(t)
	q := iq.child("urn:xmpp:mam:2", "query")
	if q == nil {
		t.Fatalf("wrote %s; want an archive query first (m2 and m3 held back, not retransmitted)", iq.String())
	}
	pc.send(archiveResult(q.attr("queryid"), "m2"))
	pc.send(`<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>`, iq.attr("id"))
	c := <-dialed
	if c == nil {
		return
	}
	defer c.Close()
	if _, err := c.Send(waitCtx(t), Message{To: bob, Body: "new", ID: "m4"}); err != nil {
		t.Fatal(err)
	}
	var written []string
	for {
		e := pc.nextMessage(t)
		id := e.attr("id")
		if id == "m4" {
			break
		}
		written = append(written, id)
	}
	if !slices.Equal(written, []string{"m3"}) {
		t.Fatalf("written again before m4: %v, want [m3]", written)
	}
	for _, id := range []string{"m1", "m2", "m3"} {
		waitState(t, c.Tracker(id), tracking.DeliveredToServer)
	}
	if n := logs.count("is in the account's archive"); n != 1 {
		t.Errorf("%d found in the archive, want 1", n)
	}
	if n := logs.count("not found in the account's archive"); n != 1 {
		t.Errorf("%d logged as written again, want 1", n)
	}
}

// A held message's number on the restored stream is voided in the store
// before anything is written on the resumed stream (which gives its number
// to the next stanza): a process that ends during the archive check
// leaves m2 and m3 with no number, ambiguous for the next restart, and
// never beside another message's number under a later saved count.
func TestArchiveHeldNumbersVoided(t *testing.T) {
	st := numberedStore(t)
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 2 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dialed := make(chan *Client, 1)
	go func() {
		c, err := Dial(ctx, testJID, peerPassword, &Config{Store: st, Addr: srv.l.Addr().String(), DirectTLS: true,
			TLSConfig: &tls.Config{RootCAs: testRoots(t)}})
		if err != nil {
			t.Log(err)
		}
		dialed <- c
	}()
	pc := srv.next(t)
	if iq := pc.next(t); iq.child("urn:xmpp:mam:2", "query") == nil {
		t.Fatalf("wrote %s; want an archive query", iq.String())
	}
	cancel() // never answered: Dial stops waiting for it
	if c := <-dialed; c != nil {
		c.Close() // during the check
	}
	for _, id := range []string{"m2", "m3"} {
		m, err := st.Message(waitCtx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if m.State != tracking.InTransit || !m.Written || m.Seq != 0 {
			t.Errorf("%s: %v, written %v, seq %d; want IN_TRANSIT, its number voided", id, m.State, m.Written, m.Seq)
		}
	}
}

// What the resumption of a stored stream settled is in the store when
// Dial returns, also when the resumed stream breaks during the archive
// check (Prosody's parser flaw): a process killed right after Dial must
// not leave m1 and m2, which the server's h acknowledged, IN_TRANSIT for
// a successor that cannot resume the stream to send again.
func TestDialRecordsResumptionAcks(t *testing.T) {
	st := numberedStore(t)
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.smID, srv.inH = "sm-stored", 3 })
	dialed := dialAsync(t, srv, Config{Store: slowCommits{st}})
	pc := srv.next(t)
	if iq := pc.next(t); iq.child("urn:xmpp:mam:2", "query") == nil {
		t.Fatalf("wrote %s; want an archive query", iq.String())
	}
	srv.set(func(srv *peerServer) { srv.noResume = true })
	pc.kill("not-well-formed")
	c := <-dialed
	if c == nil {
		return
	}
	defer c.Close()
	for _, id := range []string{"m1", "m2"} {
		m, err := st.Message(waitCtx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if m.State != tracking.DeliveredToServer {
			t.Errorf("%s is %v in the store when Dial returned, want DELIVERED_TO_SERVER", id, m.State)
		}
	}
}

// slowCommits is a store whose commits take 100 ms longer (a busy disk).
type slowCommits struct{ store.Store }

func (s slowCommits) Commit(ctx context.Context, b *store.Batch) error {
	time.Sleep(100 * time.Millisecond)
	return s.Store.Commit(ctx, b)
}
