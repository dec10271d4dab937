package interop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// peerCase is one responder configuration exercised against a server.
type peerCase struct {
	name  string
	kind  Kind
	tls   bool
	delay time.Duration
	room  bool // slixmpp only: join a room and mark group chat messages
	// stdinEOF ends the peer by closing its standard input instead of Stop.
	stdinEOF bool
}

var peerCases = []peerCase{
	{name: "slixmpp/plain", kind: Slixmpp},
	{name: "slixmpp/starttls+delay+room", kind: Slixmpp, tls: true, delay: 200 * time.Millisecond, room: true},
	{name: "slixmpp/never", kind: Slixmpp, delay: -1, stdinEOF: true},
	{name: "aioxmpp/plain", kind: Aioxmpp, stdinEOF: true},
	{name: "aioxmpp/starttls+never", kind: Aioxmpp, tls: true, delay: -1},
}

// TestInterop runs every peer case against a Prosody and an ejabberd, and
// the aioxmpp benchmark once against Prosody. Within a server the cases run in parallel, each
// with its own pair of accounts.
func TestInterop(t *testing.T) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			for _, pc := range peerCases {
				requirePeer(t, pc.kind)
			}
			accounts := []string{"bench", "benchpeer"}
			for i := range peerCases {
				accounts = append(accounts, fmt.Sprintf("client%d", i), fmt.Sprintf("peer%d", i))
			}
			srv := testserver.Start(t, kind, testserver.Options{Accounts: accounts})
			for i, pc := range peerCases {
				t.Run(pc.name, func(t *testing.T) {
					t.Parallel()
					runPeerCase(t, srv, pc, fmt.Sprintf("client%d", i), fmt.Sprintf("peer%d", i))
				})
			}
			if kind == testserver.Prosody {
				// Once is enough: the benchmark's numbers are not checked here.
				t.Run("aioxmpp-bench", func(t *testing.T) {
					t.Parallel()
					runBench(t, srv)
				})
			}
		})
	}
}

func runPeerCase(t *testing.T, srv *testserver.Server, pc peerCase, clientLocal, peerLocal string) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	opts := Options{
		Addr:      srv.Addr(),
		JID:       srv.JID(peerLocal).String(),
		Password:  srv.Password(peerLocal),
		MarkDelay: pc.delay,
	}
	if pc.tls {
		opts.CertPEM = srv.CertPEM()
	}
	room := jid.MustParse("interop-" + peerLocal + "@" + srv.MUCDomain())
	if pc.room {
		opts.Room, opts.Nick, opts.RoomMarkers = room.String(), "py-"+peerLocal, true
	}
	c := dialClient(ctx, t, srv, clientLocal)
	var p *Peer
	if pc.kind == Slixmpp {
		p = StartSlixmpp(t, opts)
	} else {
		p = StartAioxmpp(t, opts)
	}
	if ready := p.Ready(); ready.TLS != pc.tls {
		t.Errorf("ready event %s: tls = %v, want %v", ready, ready.TLS, pc.tls)
	}
	t.Logf("%s peer %s ready (pid %d)", pc.kind, p.JID(), p.PID())

	to := srv.JID(peerLocal)
	checkOneToOne(ctx, t, c, p, to, pc.delay, srv.MAM())
	if pc.room {
		checkRoom(ctx, t, c, p, room, pc.delay)
	}
	checkStop(ctx, t, p, pc.stdinEOF)
}

// checkStop stops the peer (SIGTERM, or end of file on its standard input)
// and checks it exited cleanly.
func checkStop(ctx context.Context, t *testing.T, p *Peer, stdinEOF bool) {
	t.Helper()
	how := "SIGTERM"
	if stdinEOF {
		how = "end of standard input"
		p.stdin.Close()
		select {
		case <-p.Done():
		case <-ctx.Done():
			t.Fatalf("peer still running after its standard input closed")
		}
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := p.Err(); err != nil {
		t.Errorf("exit after %s: %v\n%s", how, err, p.Logs())
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	evs := p.Events()
	if last := evs[len(evs)-1]; last.Kind != EventStopped || last.Code != 0 {
		t.Errorf("last event %s, want stopped with code 0", last)
	}
	if _, err := p.WaitMessage(t.Context(), 1000); !errors.Is(err, ErrExited) {
		t.Errorf("WaitMessage after exit: %v, want ErrExited", err)
	}
}

// checkOneToOne sends a tracked chat message to the peer's bare JID and
// checks the receipt and the marker (or its absence) that come back.
func checkOneToOne(ctx context.Context, t *testing.T, c *client, p *Peer, to jid.JID, delay time.Duration, mam bool) {
	t.Helper()
	const id1, id2 = "interop-1", "interop-2"
	sentAt := time.Now()
	if err := c.sendTracked(ctx, to, stanza.ChatMessage, id1, "hello "+string(p.Kind())); err != nil {
		t.Fatalf("send: %v", err)
	}
	got, err := p.WaitMessage(ctx, 1)
	if err != nil {
		t.Fatalf("peer did not report the message: %v", err)
	}
	if got.ID != id1 || got.Body != "hello "+string(p.Kind()) || got.Type != "chat" || !got.Receipt || !got.Markable {
		t.Errorf("peer saw %s", got)
	}
	if bare := jid.MustParse(got.From).Bare(); !bare.Equal(c.jid.Bare()) {
		t.Errorf("peer saw the message from %s, want %s", got.From, c.jid)
	}
	// With MAM the recipient's server stamps a stanza-id by the recipient's
	// bare JID: both scripts must report it.
	if mam && !slices.ContainsFunc(got.StanzaIDs, func(s StanzaID) bool { return s.By == to.String() && s.ID != "" }) {
		t.Errorf("peer reported stanza-ids %v, want one by %s", got.StanzaIDs, to)
	}
	receipt, err := c.wait(ctx, "receipt for "+id1, func(st inStanza) bool {
		return st.Received != nil && st.Received.ID == id1
	})
	if err != nil {
		t.Fatal(err)
	}
	if from := jid.MustParse(receipt.From); !from.Equal(jid.MustParse(p.JID())) {
		t.Errorf("receipt from %s, want the peer's full JID %s", receipt.From, p.JID())
	}

	if delay < 0 {
		// A marker for id1 would have left the peer before it handled id2, so
		// it would arrive before the receipt for id2.
		if err := c.sendTracked(ctx, to, stanza.ChatMessage, id2, "second"); err != nil {
			t.Fatalf("send: %v", err)
		}
		if _, err := c.wait(ctx, "receipt for "+id2, func(st inStanza) bool {
			return st.Received != nil && st.Received.ID == id2
		}); err != nil {
			t.Fatal(err)
		}
		for _, st := range c.received() {
			if st.Displayed != nil {
				t.Errorf("marker with MarkDelay < 0: %s", st)
			}
		}
		for _, e := range p.Events() {
			if e.Kind == EventMarkerSent {
				t.Errorf("peer event with MarkDelay < 0: %s", e)
			}
		}
		return
	}

	marker, err := c.wait(ctx, "displayed marker for "+id1, func(st inStanza) bool {
		return st.Displayed != nil && st.Displayed.ID == id1
	})
	if err != nil {
		t.Fatal(err)
	}
	if marker.Seq < receipt.Seq {
		t.Errorf("marker (#%d) arrived before the receipt (#%d)", marker.Seq, receipt.Seq)
	}
	if marker.Type != "chat" {
		t.Errorf("marker type %q, want chat", marker.Type)
	}
	if gap := marker.At.Sub(sentAt); gap < delay {
		t.Errorf("marker %v after sending, want at least MarkDelay %v", gap, delay)
	}
	sent, err := p.WaitEvent(ctx, func(e Event) bool { return e.Kind == EventMarkerSent && e.ID == id1 })
	if err != nil {
		t.Fatalf("no marker_sent event: %v", err)
	}
	// On the peer's clock: message received, then the marker MarkDelay later.
	if gap := sent.Time.Sub(got.Time); gap < delay-10*time.Millisecond {
		t.Errorf("peer sent the marker %v after receiving, want MarkDelay %v", gap, delay)
	}
}

// checkRoom joins the peer's room, sends a markable group chat message and
// checks the peer's displayed marker references the room's stanza-id (or the
// message id in rooms without urn:xmpp:sid:0).
func checkRoom(ctx context.Context, t *testing.T, c *client, p *Peer, room jid.JID, delay time.Duration) {
	t.Helper()
	ready := p.Ready()
	if ready.Room != room.String() {
		t.Errorf("ready event %s: room %q, want %s", ready, ready.Room, room)
	}
	const nick, id = "gocl", "interop-gc-1"
	if err := c.join(ctx, room, nick); err != nil {
		t.Fatal(err)
	}
	sentAt := time.Now()
	if err := c.sendTracked(ctx, room, stanza.GroupChatMessage, id, "hello room"); err != nil {
		t.Fatalf("send: %v", err)
	}
	self, _ := room.WithResource(nick)
	reflection, err := c.wait(ctx, "reflection of "+id, func(st inStanza) bool {
		return st.XMLName.Local == "message" && st.From == self.String() && st.ID == id && st.Body != ""
	})
	if err != nil {
		t.Fatal(err)
	}
	want, by := id, "message-id"
	if ready.RoomSID {
		want, by = "", "stanza-id"
		for _, sid := range reflection.StanzaIDs {
			if sid.By == room.String() {
				want = sid.ID
			}
		}
		if want == "" {
			t.Fatalf("room announces %s but the reflection has no stanza-id by it: %s", nsSID, reflection)
		}
	}
	t.Logf("room %s: urn:xmpp:sid:0 %v; marker must reference %s %q", room, ready.RoomSID, by, want)
	peerOccupant, _ := room.WithResource(ready.Nick)
	marker, err := c.wait(ctx, "group chat marker", func(st inStanza) bool {
		return st.Displayed != nil && st.From == peerOccupant.String()
	})
	if err != nil {
		t.Fatal(err)
	}
	if marker.Displayed.ID != want || marker.Type != "groupchat" {
		t.Errorf("group chat marker %s, want type groupchat and %s %q", marker, by, want)
	}
	if gap := marker.At.Sub(sentAt); gap < delay {
		t.Errorf("marker %v after sending, want at least MarkDelay %v", gap, delay)
	}
	sent, err := p.WaitEvent(ctx, func(e Event) bool { return e.Kind == EventMarkerSent && e.Type == "groupchat" })
	if err != nil {
		t.Fatalf("no group chat marker_sent event: %v", err)
	}
	if sent.By != by || sent.MessageID != id {
		t.Errorf("marker_sent %s: want by %s for message %s", sent, by, id)
	}
}

// runBench runs a small aioxmpp benchmark against a slixmpp responder.
func runBench(t *testing.T, srv *testserver.Server) {
	requirePeer(t, Aioxmpp)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	p := StartSlixmpp(t, Options{
		Addr:     srv.Addr(),
		JID:      srv.JID("benchpeer").String(),
		Password: srv.Password("benchpeer"),
	})
	const n = 50
	res, err := RunAioxmppBench(ctx, BenchOptions{
		Addr:     srv.Addr(),
		JID:      srv.JID("bench").String(),
		Password: srv.Password("bench"),
		CertPEM:  srv.CertPEM(),
		To:       p.JID(),
		Count:    n,
		Timeout:  30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Count != n || res.Seen.Count != n || res.ToRecipient.Count != n || res.ToServer.Count != n {
		t.Errorf("incomplete: %+v", res)
	}
	if !res.SM {
		t.Errorf("stream management off: %+v", res)
	}
	if res.ToServer.All <= 0 || res.ToRecipient.All < res.ToServer.All/2 || res.Seen.All <= 0 || res.CPU <= 0 || res.PeakRSS <= 0 {
		t.Errorf("implausible numbers: %+v", res)
	}
	t.Logf("%s, %d messages: to server %v, to recipient %v, seen %v; CPU %v (total %v); peak RSS %.1f MiB",
		res.Implementation, res.Count, res.ToServer.All, res.ToRecipient.All, res.Seen.All,
		res.CPU, res.CPUTotal, float64(res.PeakRSS)/(1<<20))
	if got := countEvents(p, EventMessage); got != n {
		t.Errorf("responder saw %d messages, want %d", got, n)
	}
}

func countEvents(p *Peer, kind string) int {
	n := 0
	for _, e := range p.Events() {
		if e.Kind == kind {
			n++
		}
	}
	return n
}
