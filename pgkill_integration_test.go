package xmpptrack

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/testkit/child"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/postgres"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// pgKillMessages is how many messages the killed instance sends at most.
const pgKillMessages = 600

// pgKillWindow is the tracking window of the killed instance's messages:
// one whose receipt the killed process had acknowledged to the server but
// not yet committed is never proven delivered, and times out.
const pgKillWindow = 20 * time.Second

// pgKillChild is the instance the test kills: it sends k0000… from 4
// goroutines through a client on the PostgreSQL store of
// XMPPTRACK_PGKILL_DSN, printing each id once Send returned, until it is
// killed.
func pgKillChild() error {
	ctx := context.Background()
	st, err := postgres.Open(ctx, os.Getenv("XMPPTRACK_PGKILL_DSN"))
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := Dial(dctx, jid.MustParse(os.Getenv("XMPPTRACK_PGKILL_JID")), os.Getenv("XMPPTRACK_PGKILL_PASSWORD"), &Config{
		Store: st, Addr: os.Getenv("XMPPTRACK_PGKILL_ADDR"), AllowPlaintext: true, Window: pgKillWindow,
	})
	if err != nil {
		return err
	}
	if err := streamStored(ctx, c); err != nil {
		return err
	}
	fmt.Println("up")
	to := jid.MustParse(os.Getenv("XMPPTRACK_PGKILL_TO"))
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < pgKillMessages; i += 4 {
				id := fmt.Sprintf("k%04d", i)
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := c.Send(sctx, Message{To: to, ID: id, Body: id})
				cancel()
				if err != nil {
					errs <- fmt.Errorf("Send %s: %w", id, err)
					return
				}
				mu.Lock()
				fmt.Println("sent", id)
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // a steady rate: the kill lands mid-run
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Println("done")
	select {}
}

// connLog hands on the "resumed" attribute of a client's "connected" log
// records (logged right after Dial returns), the error of a failed
// resumption and the ids of the restored messages that the resumption
// held back (its h did not settle them: see archive.go) by their fate:
// sent again because the
// account's archive did not have them, settled because it did, or sent
// again without looking (which must not happen); and passes every record
// on.
type connLog struct {
	slog.Handler
	resumed   chan bool
	mu        *sync.Mutex
	failed    *string
	ambiguous map[string]int // under mu: sent again, not in the archive
	archived  map[string]int // under mu: found in the archive
	blind     map[string]int // under mu: sent again unchecked
}

func (l connLog) Enabled(context.Context, slog.Level) bool { return true }
func (l connLog) Handle(ctx context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		switch {
		case r.Message == "xmpptrack: connected" && a.Key == "resumed":
			select {
			case l.resumed <- a.Value.Bool():
			default:
			}
		case r.Message == "xmpptrack: resuming the stored stream failed; binding a new one" && a.Key == "err":
			l.mu.Lock()
			*l.failed = a.Value.String()
			l.mu.Unlock()
		case a.Key == "id" && strings.HasPrefix(r.Message, ambiguousResent):
			l.mu.Lock()
			l.ambiguous[a.Value.String()]++
			l.mu.Unlock()
		case a.Key == "id" && strings.HasPrefix(r.Message, ambiguousArchived):
			l.mu.Lock()
			l.archived[a.Value.String()]++
			l.mu.Unlock()
		case a.Key == "id" && strings.HasPrefix(r.Message, ambiguousBlind):
			l.mu.Lock()
			l.blind[a.Value.String()]++
			l.mu.Unlock()
		}
		return true
	})
	return l.Handler.Handle(ctx, r)
}

// TestIntegrationPostgresKilled kills an instance sending through a
// PostgreSQL store with SIGKILL mid-run (a child process: this test binary
// with XMPPTRACK_PGKILL_CHILD set). Another instance of the account, on
// another resource and its own store handle, reads the killed instance's
// messages (Status and the feed). The killed instance, restarted on the
// same store, resumes its XEP-0198 stream; every message written ahead
// then reaches SEEN_BY_RECIPIENT, and the store agrees with what the
// recipient received. When the stream was resumed (and not lost again), a
// message arrives twice only if the restarted instance logged it as sent
// again because the account's archive did not have it.
func TestIntegrationPostgresKilled(t *testing.T) {
	if os.Getenv("XMPPTRACK_PGKILL_CHILD") != "" {
		// The child: it never returns (the parent kills it).
		if err := pgKillChild(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		return
	}
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		pg := testserver.StartPostgres(t, testserver.PostgresOptions{})
		dsn, err := pg.CreateDatabase(ctx, "killed")
		if err != nil {
			t.Fatal(err)
		}

		// bob marks each message displayed as it arrives (a marker also
		// covers the earlier ones).
		var mu sync.Mutex
		got := map[string]int{}
		dialTest(t, srv, "bob", Config{AllowPlaintext: true, OnMessage: func(c *Client, m *Incoming) {
			mu.Lock()
			got[m.ID]++
			mu.Unlock()
			c.MarkDisplayed(m.From)
		}})

		account := srv.JID("alice").String() + "/pgkill"
		cmd, sc := child.Start(t, nil, "^TestIntegrationPostgresKilled$", "XMPPTRACK_PGKILL_CHILD=1", "XMPPTRACK_PGKILL_DSN="+dsn,
			"XMPPTRACK_PGKILL_JID="+account, "XMPPTRACK_PGKILL_PASSWORD="+srv.Password("alice"),
			"XMPPTRACK_PGKILL_TO="+srv.JID("bob").String(), "XMPPTRACK_PGKILL_ADDR="+srv.Addr())
		sent := map[string]bool{}
		for sc.Scan() && len(sent) < pgKillMessages/3 {
			line := sc.Text()
			if strings.HasPrefix(line, "error") || line == "done" {
				t.Fatalf("child: %s", line)
			}
			if id, ok := strings.CutPrefix(line, "sent "); ok {
				sent[id] = true
			}
		}
		if len(sent) < pgKillMessages/3 {
			t.Fatalf("the child stopped after %d messages: %v", len(sent), sc.Err())
		}
		cmd.Process.Kill() // SIGKILL, mid-run
		cmd.Wait()

		// Another instance reads the killed one's messages.
		killed := store.Instance{Account: srv.JID("alice").String(), Resource: "pgkill"}
		readerStore, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer readerStore.Close()
		reader := dialTest(t, srv, "alice", Config{AllowPlaintext: true, Store: readerStore})
		for id := range sent {
			s, err := reader.Status(ctx, id)
			if err != nil {
				t.Fatalf("another instance: Status(%s): %v", id, err)
			}
			if s.Pending || len(s.History) == 0 || s.History[0].State != tracking.InTransit {
				t.Fatalf("another instance: Status(%s) = %+v", id, s)
			}
		}
		inFeed := map[string]bool{}
		for after := int64(0); ; {
			cs, err := readerStore.Changes(ctx, store.FeedQuery{After: after, Owner: killed, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) == 0 {
				break
			}
			for _, c := range cs {
				inFeed[c.ID] = true
			}
			after = cs[len(cs)-1].Cursor
		}
		for id := range sent {
			if !inFeed[id] {
				t.Errorf("another instance: the feed lacks %s", id)
			}
		}
		var written []string // every message the killed instance wrote ahead
		if err := readerStore.Pending(ctx, killed, func(m store.Message) error {
			written = append(written, m.ID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed after %d sends; %d of its messages pending in the store", len(sent), len(written))

		// The killed instance restarts on the same store and resumes.
		before, err := readerStore.Session(ctx, killed)
		if err != nil {
			t.Fatal(err)
		}
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		conns := connLog{slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}), make(chan bool, 8),
			new(sync.Mutex), new(string), map[string]int{}, map[string]int{}, map[string]int{}}
		restarted, err := Dial(ctx, jid.MustParse(account), srv.Password("alice"), &Config{
			Store: st, Addr: srv.Addr(), AllowPlaintext: true, Window: pgKillWindow, Logger: slog.New(conns)})
		if err != nil {
			t.Fatal(err)
		}
		defer restarted.Close()
		var resumed bool
		select {
		case resumed = <-conns.resumed:
		case <-ctx.Done():
			t.Fatal("the restarted instance never logged its connection")
		}
		conns.mu.Lock()
		failed := *conns.failed
		conns.mu.Unlock()
		switch {
		case resumed:
		case strings.Contains(failed, "server acknowledged h="):
			// The server resumed the stream, but it had received stanzas
			// written after the last session state the killed process
			// committed: the client refuses an h above what the store
			// knows was sent, binds a new stream and re-sends.
			t.Logf("the client refused the resumption of stream %s: %s", before.ID, failed)
		case srv.Kind() == testserver.Prosody && failed != "":
			// Prosody 0.12 may hang up on a <resume/> that comes while it
			// still tears down the killed connection: the client binds a
			// new stream and re-sends (see the README's durable record).
			t.Logf("Prosody refused the resumption of stream %s: %s", before.ID, failed)
		default:
			t.Errorf("the restarted instance did not resume its stream %s (%s)", before.ID, failed)
		}

		// Every message settles; wait on the feed.
		all := map[string]bool{}
		for id := range sent {
			all[id] = true
		}
		final := map[string]tracking.MessageState{}
		for after := int64(0); ; {
			cs, err := readerStore.Changes(ctx, store.FeedQuery{After: after, Owner: killed, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				all[c.ID] = true
				after = c.Cursor
			}
			if len(cs) > 0 {
				continue
			}
			var open []string
			var next time.Time // the earliest window end of a DELIVERED_TO_RECIPIENT message
			for id := range all {
				rec, err := readerStore.Message(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case rec.Settled:
					final[id] = rec.State
				case rec.State == tracking.DeliveredToRecipient && time.Now().After(rec.Deadline):
					// Its window ended without a marker: settled, with
					// nothing to record.
					final[id] = rec.State
				default:
					open = append(open, fmt.Sprintf("%s %v", id, rec.State))
					if rec.State == tracking.DeliveredToRecipient && (next.IsZero() || rec.Deadline.Before(next)) {
						next = rec.Deadline
					}
				}
			}
			if len(open) == 0 {
				break
			}
			wctx, cancel := ctx, context.CancelFunc(func() {})
			if !next.IsZero() {
				wctx, cancel = context.WithDeadline(ctx, next)
			}
			err = readerStore.Wait(wctx, after)
			cancel()
			if err != nil && ctx.Err() != nil {
				t.Fatalf("%d messages never settled, such as %v: %v", len(open), open[:min(5, len(open))], err)
			}
		}
		if resumed && restarted.Stats().Reconnections == 0 {
			if after, err := readerStore.Session(ctx, killed); err != nil || after.ID != before.ID {
				t.Errorf("stored stream after the resumption: %q, %v; want %q", after.ID, err, before.ID)
			}
		}

		// Reconcile with what bob received.
		mu.Lock()
		defer mu.Unlock()
		dups, timedOut, unmarked := 0, 0, 0
		for id := range all {
			n := got[id]
			switch final[id] {
			case tracking.SeenByRecipient:
			case tracking.DeliveredToRecipient:
				unmarked++
			case tracking.TimedOut:
				timedOut++
			default:
				t.Errorf("%s ended %v", id, final[id])
			}
			if n == 0 {
				t.Errorf("%s ended %v in the store, but bob never got it", id, final[id])
			}
			if n > 1 {
				dups += n - 1
				conns.mu.Lock()
				a := conns.ambiguous[id]
				conns.mu.Unlock()
				if n-1 > a && resumed && restarted.Stats().Reconnections == 0 {
					// Within one resumed stream only a message sent again
					// because the archive did not have it may arrive twice
					// (also on ejabberd, whose dead connection's session
					// may still route a message in flight at the kill after
					// handing its count to the resumed stream: the archive
					// has that one).
					t.Errorf("bob got %s %d times; the resumption sent it again as not in the archive %d times", id, n, a)
				}
			}
		}
		conns.mu.Lock()
		for id := range conns.blind {
			t.Errorf("%s was sent again without looking it up in the archive", id)
		}
		t.Logf("held messages after the restart on %s: %d settled by the archive, %d re-sent (not found)",
			srv.Kind(), len(conns.archived), len(conns.ambiguous))
		conns.mu.Unlock()
		for id := range got {
			if !all[id] {
				t.Errorf("bob got %s, which the store does not know", id)
			}
		}
		// TIMED_OUT: a receipt that the killed process had acknowledged to
		// the server but not committed; DELIVERED_TO_RECIPIENT at the end of
		// its window: the same for a marker.
		t.Logf("%d messages written ahead: %d SEEN_BY_RECIPIENT, %d DELIVERED_TO_RECIPIENT, %d TIMED_OUT; bob got %d ids, %d duplicates",
			len(all), len(all)-timedOut-unmarked, unmarked, timedOut, len(got), dups)
	})
}
