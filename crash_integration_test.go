package xmpptrack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/testkit/child"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// The test binary doubles as the crash test's sending process. Every
// client of the package's tests, the crash children's included, poisons the
// stanza buffers it gives back (poisonPooled).
func TestMain(m *testing.M) {
	poisonPooled = true
	if os.Getenv("XMPPTRACK_INBOUND_CHILD") != "" {
		if err := inboundChild(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("XMPPTRACK_CRASH_CHILD") != "" {
		if err := crashChild(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// restartDelay is how long the crash test waits before it restarts the
// killed process (XMPPTRACK_CRASH_RESTART_DELAY, a Go duration; default
// none).
var restartDelay = func() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("XMPPTRACK_CRASH_RESTART_DELAY"))
	return d
}()

// crashLogs, when set (XMPPTRACK_CRASH_LOGS, a directory), turns on the
// servers' debug logs and the child's, and keeps them there.
var crashLogs = os.Getenv("XMPPTRACK_CRASH_LOGS")

func crashLogLevel() slog.Level {
	if crashLogs != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// crashMessages is how many messages the crash test sends.
const crashMessages = 2000

// crashChild sends the messages m0000… at a steady rate through a client
// on the store, skipping those an earlier run already wrote ahead (the
// store re-sends those at Dial if needed), printing each id once Send
// returned, then, once the server acknowledged them all and the store
// recorded it, "done", and waits to be killed.
func crashChild() error {
	ctx := context.Background()
	// The default: the file for this process (the test reads it only
	// after the kill; this process reports what the test checks while it
	// lives, see "recorded").
	st, err := sqlite.Open(ctx, os.Getenv("XMPPTRACK_CRASH_STORE"))
	if err != nil {
		return err
	}
	account := jid.MustParse(os.Getenv("XMPPTRACK_CRASH_JID"))
	to := jid.MustParse(os.Getenv("XMPPTRACK_CRASH_TO"))
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := Dial(dctx, account, os.Getenv("XMPPTRACK_CRASH_PASSWORD"), &Config{
		Store: st, Addr: os.Getenv("XMPPTRACK_CRASH_ADDR"), AllowPlaintext: true, Window: time.Hour,
		// A message re-sent on a new stream after a failed resumption
		// (also one within this process, when a busy server stops
		// answering and then refuses the resumption) may arrive twice.
		StreamManagement: sm.Config{OnResend: func(s sm.Stanza) { fmt.Println("resent", s.ID) }},
		Logger:           slog.New(ambiguousLog{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: crashLogLevel()})}),
	})
	if err != nil {
		return err
	}
	if err := streamStored(ctx, c); err != nil {
		return err
	}
	fmt.Println("up")
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range crashMessages {
		id := fmt.Sprintf("m%04d", i)
		if _, err := st.Message(ctx, id); err == nil {
			continue
		}
		<-tick.C
		// The bound only ends a hang: at a load of 20 to 35 on two cores
		// (two whole suites at once) a Send once waited 30 s. A slow one
		// is told, with the client's state, without failing the test.
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := c.Send(sctx, Message{To: to, ID: id, Body: id})
		cancel()
		if d := time.Since(start); d > 10*time.Second {
			fmt.Printf("note %s slow Send %s: %v (%+v)\n", time.Now().Format("15:04:05.000"), id, d.Round(time.Millisecond), c.Stats())
		}
		if err != nil {
			// The client's state says what Send waited for (the store,
			// the window's acks, a connection) if it ran out of time.
			return fmt.Errorf("Send %s: %w (%+v)", id, err, c.Stats())
		}
		fmt.Println("sent", id)
	}
	// Until the server acknowledged everything and the store has it, so
	// that the last kill leaves the store agreeing with the recipient.
	for deadline := time.Now().Add(30 * time.Second); c.Stats().Unacked > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if st := c.Stats(); st.Unacked > 0 {
		fmt.Printf("note %s unacknowledged after 30 s: %+v\n", time.Now().Format("15:04:05.000"), st)
	}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	err = c.dur.flush(fctx)
	fcancel()
	if err != nil {
		return err
	}
	fmt.Println("done")
	// The record catches up with the server: a message's ack, and its
	// state change, may be committed after the recipient already has it.
	// "recorded" once none of the messages is IN_TRANSIT in the store
	// (what the test requires while the process lives), "unrecorded IDS"
	// if some still are after a minute.
	var unacked map[string]bool
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if unacked, err = unackedIn(st); err != nil {
			return err
		}
		if len(unacked) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(unacked) > 0 {
		fmt.Println("unrecorded", slices.Sorted(maps.Keys(unacked)))
	} else {
		fmt.Println("recorded")
	}
	select {}
}

// ambiguousLog is the crash child's log handler: it also prints
// "ambiguous ID" for each restored message that the first resumption
// after the restart held back (its h did not settle it: see archive.go)
// and sent again because the account's archive did not have it, the only
// duplicates allowed within the resumption window besides OnResend's;
// "archived ID" for each one the archive had (it was settled, not sent
// again); "proved ID" for one whose receipt came during the check (settled
// too); "blind ID" for one sent again without that check (there must be
// none); and "dropped HOW" when
// the stored stream could not be resumed and the client bound a new one
// (the server refused the resumption with <failed/>, or Dial gave up
// resuming), so that the test judges that restart by the rule for a
// session the server dropped.
type ambiguousLog struct{ slog.Handler }

func (h ambiguousLog) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case strings.HasPrefix(r.Message, ambiguousResent), strings.HasPrefix(r.Message, ambiguousArchived),
		strings.HasPrefix(r.Message, ambiguousProved), strings.HasPrefix(r.Message, ambiguousBlind):
		what := map[string]string{ambiguousResent: "ambiguous", ambiguousArchived: "archived", ambiguousProved: "proved", ambiguousBlind: "blind"}
		for prefix, word := range what {
			if strings.HasPrefix(r.Message, prefix) {
				r.Attrs(func(a slog.Attr) bool {
					if a.Key == "id" {
						fmt.Println(word, a.Value.String())
					}
					return true
				})
			}
		}
	case r.Message == "sm: resumption failed; binding a new session":
		cond := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "condition" {
				cond = a.Value.String()
			}
			return true
		})
		fmt.Println("dropped refused:" + cond)
	case r.Message == "xmpptrack: resuming the stored stream failed; binding a new one":
		fmt.Println("dropped given-up")
	}
	return h.Handler.Handle(ctx, r)
}

// The log messages of the fates of a restored message that the first
// resumption after a restart did not settle by its h.
const (
	ambiguousResent   = "xmpptrack: a restored message the resumption could not settle was not found in the account's archive"
	ambiguousArchived = "xmpptrack: a restored message the resumption could not settle is in the account's archive"
	ambiguousProved   = "xmpptrack: a restored message the resumption could not settle reached its recipient meanwhile"
	ambiguousBlind    = "sm: a stanza restored without a recorded number may have reached the server"
)

func (h ambiguousLog) WithAttrs(as []slog.Attr) slog.Handler {
	return ambiguousLog{h.Handler.WithAttrs(as)}
}

func (h ambiguousLog) WithGroup(name string) slog.Handler {
	return ambiguousLog{h.Handler.WithGroup(name)}
}

// TestIntegrationStoreCrash kills a sending process with SIGKILL at random
// moments, four times, restarting it on the same SQLite store each time,
// while a recipient logs what it receives.
//
// The first three restarts come within the server's resumption window
// (at once; the third kill right after the restarted process is up, during
// its retransmissions): each message must arrive exactly once, except a
// message the restarted process logged as sent again because the
// account's archive did not have it (a restored message the server's h
// did not settle: looked up in the archive, and sent again when not found
// rather than risk its loss), which may arrive once more. There is no
// allowance for ejabberd's hand-over (its old session routing messages it
// had read from the dead connection after it answered <resume/>): such a
// message is found in the archive and settled. Before the
// fourth restart the server itself is restarted, so the stored stream is
// gone: the messages the server had not acknowledged at that kill are
// re-sent, and those are the only duplicates allowed, never more than were
// unacknowledged then.
//
// Each restart is judged by what its child reported: a restart within the
// window whose resumption the server nevertheless refused (Prosody 0.12
// drops a resumed session whose old connection ended inside a stanza; the
// next attempt gets item-not-found) or that Dial gave up resuming bound a
// new stream, and gets the rule of the server restart for its kill. The
// fourth restart must report so. A connection lost within a run whose
// resumption then fails (a busy server that stopped answering) re-sends on
// a new stream, and each message the child's OnResend announced may arrive
// once more. In the end every message arrived, none was aborted,
// no stored state claims DELIVERED_TO_RECIPIENT or SEEN_BY_RECIPIENT for a
// message the recipient does not have, and every message the recipient has
// is past IN_TRANSIT in the store.
func TestIntegrationStoreCrash(t *testing.T) {
	crashServers(t, func(t *testing.T, srv *testserver.Server) {
		var mu sync.Mutex
		got := map[string]int{}
		all := make(chan struct{})
		bobCfg := Config{AllowPlaintext: true, OnMessage: func(_ *Client, m *Incoming) {
			mu.Lock()
			defer mu.Unlock()
			got[m.ID]++
			if len(got) == crashMessages && got[m.ID] == 1 {
				close(all)
			}
		}}
		bob := dialTest(t, srv, "bob", bobCfg)
		received := func() int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, c := range got {
				n += c
			}
			return n
		}
		// missingIDs lists the messages the recipient does not have.
		missingIDs := func() []string {
			mu.Lock()
			defer mu.Unlock()
			var ids []string
			for i := range crashMessages {
				if id := fmt.Sprintf("m%04d", i); got[id] == 0 {
					ids = append(ids, id)
				}
			}
			return ids
		}
		path := filepath.Join(t.TempDir(), "crash.db")
		child := func() (*exec.Cmd, *bufio.Scanner) {
			var stderr io.Writer
			if crashLogs != "" {
				f, err := os.OpenFile(filepath.Join(crashLogs, string(srv.Kind())+"-child.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				fmt.Fprintf(f, "==== child start %s\n", time.Now().Format(time.RFC3339Nano))
				stderr = f
			}
			return child.Start(t, stderr, "^$", "XMPPTRACK_CRASH_CHILD=1", "XMPPTRACK_CRASH_STORE="+path,
				"XMPPTRACK_CRASH_JID="+srv.JID("alice").String()+"/crash", "XMPPTRACK_CRASH_PASSWORD="+srv.Password("alice"),
				"XMPPTRACK_CRASH_TO="+srv.JID("bob").String(), "XMPPTRACK_CRASH_ADDR="+srv.Addr())
		}
		const serverRestartRun = 3                         // the server restarts between its kill and the next run
		ambiguous := map[string]int{}                      // re-sent as ambiguous by a restart that resumed
		resent := map[string]int{}                         // re-sent on a new stream after a failed resumption
		unackedAt := []map[string]bool{}                   // per kill, the messages the store had unacknowledged
		droppedRuns := []int{}                             // the restarts whose stored stream was not resumed
		totalArchived, totalProved, totalResent := 0, 0, 0 // held messages of all restarts: found in the archive, proved by a receipt, re-sent
		for run := 0; run < 5; run++ {
			if run > 0 {
				time.Sleep(restartDelay) // a process manager's restart delay (default none)
			}
			cmd, sc := child()
			killAfter := -1
			if run < 4 {
				killAfter = 100 + rand.IntN(400) // lines: during Send, between write and ack
				if run == 1 {
					killAfter = 0 // right after Dial: during the retransmissions
				}
			}
			lines, last := 0, ""
			var amb []string // re-sent as not archived (printed during Dial, before "up", or after a reconnection)
			archived := 0    // found in the archive
			proved := 0      // their receipt came during the check
			dropped := ""    // how the stored stream was not resumed
			// known takes the lines that every read of the child's output
			// takes alike: a message's fate, and how the stored stream was
			// not resumed (at says when, for the log). It reports whether
			// line was one of them.
			known := func(line, at string) bool {
				if note, ok := strings.CutPrefix(line, "note "); ok {
					t.Logf("run %d: child: %s", run, note)
					return true
				}
				if how, ok := strings.CutPrefix(line, "dropped "); ok {
					dropped += fmt.Sprintf(" %s (%s)", how, at)
					return true
				}
				if id, ok := strings.CutPrefix(line, "ambiguous "); ok {
					amb = append(amb, id)
					return true
				}
				if _, ok := strings.CutPrefix(line, "archived "); ok {
					archived++
					return true
				}
				if _, ok := strings.CutPrefix(line, "proved "); ok {
					proved++
					return true
				}
				if id, ok := strings.CutPrefix(line, "resent "); ok {
					mu.Lock()
					resent[id]++
					mu.Unlock()
					return true
				}
				if id, ok := strings.CutPrefix(line, "blind "); ok {
					t.Errorf("run %d: %s was sent again without looking it up in the archive", run, id)
					return true
				}
				return false
			}
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "error") {
					t.Fatalf("run %d: child: %s", run, line)
				}
				if known(line, fmt.Sprintf("after %d sends", lines)) {
					continue
				}
				if line == "up" && killAfter == 0 || lines == killAfter || line == "done" {
					break
				}
				if strings.HasPrefix(line, "sent") {
					lines++
					last = line
				}
			}
			if killAfter < 0 {
				select {
				case <-all:
				case <-time.After(4 * time.Minute):
					cmd.Process.Kill()
					cmd.Wait()
					dumpCrashStore(t, path)
					missing := missingIDs()
					if st, err := sqlite.Open(context.Background(), path); err == nil {
						for _, id := range missing {
							m, err := st.Message(context.Background(), id)
							var hist []string
							for _, ch := range m.History {
								hist = append(hist, ch.State.String()+"@"+ch.At.Format("15:04:05.000"))
							}
							t.Logf("missing %s: stored %s seq %d written %v, history %v (%v)", id, m.State, m.Seq, m.Written, hist, err)
						}
						st.Close()
					}
					t.Fatalf("the recipient got %d of %d messages; missing: %s", received(), crashMessages, strings.Join(missing, " "))
				}
				// The child's record catches up with the recipient: a
				// message's ack, and its state change, may be committed
				// after the recipient already has it. None may stay
				// IN_TRANSIT while the process lives: the child checks its
				// own store (which it holds for its process) and says so.
				recorded := false
				for !recorded && sc.Scan() {
					line := sc.Text()
					if u, ok := strings.CutPrefix(line, "unrecorded "); ok {
						t.Fatalf("the store did not record the server's ack of %s within a minute", u)
					}
					if strings.HasPrefix(line, "error") {
						t.Fatalf("run %d: child: %s", run, line)
					}
					if known(line, fmt.Sprintf("after %d sends", lines)) {
						continue
					}
					recorded = line == "recorded"
				}
				if !recorded {
					t.Fatalf("run %d: the child ended before it said its store recorded every ack", run)
				}
			}
			cmd.Process.Kill() // SIGKILL
			killedAt := time.Now()
			for sc.Scan() {
				// What the child printed before it died: a stream it bound
				// after the kill point still re-sent, before the kill.
				known(sc.Text(), "after the kill point")
			}
			cmd.Wait()
			// Judge this restart by what happened to its stored stream: one
			// that resumed must deliver each message exactly once, except
			// those re-sent as ambiguous; one the server dropped (refused
			// with <failed/>, or Dial gave up resuming and bound a new
			// stream) re-sends the messages unacknowledged at the kill
			// before it, which may arrive twice.
			if run > 0 {
				totalArchived += archived
				totalProved += proved
				totalResent += len(amb)
			}
			switch {
			case run == 0:
			case dropped != "":
				droppedRuns = append(droppedRuns, run)
				t.Logf("run %d: the stored stream was not resumed:%s; rule: duplicates only of the %d messages unacknowledged at kill %d (%d ambiguous found in the archive, %d not, before that)",
					run, dropped, len(unackedAt[run-1]), run-1, archived, len(amb))
			default:
				for _, id := range amb {
					t.Logf("run %d: %s was sent again as ambiguous", run, id)
					mu.Lock()
					ambiguous[id]++
					mu.Unlock()
				}
				t.Logf("run %d: the stored stream resumed; rule: exactly once, except %d message(s) re-sent as not in the archive (%d found there, %d proved by their receipt)",
					run, len(amb), archived, proved)
			}
			if run == serverRestartRun+1 && dropped == "" {
				t.Errorf("run %d: the child reported no dropped session after the server restart", run)
			}
			if killAfter < 0 {
				break
			}
			unacked, err := unackedIDs(path)
			if err != nil {
				t.Fatal(err)
			}
			unackedAt = append(unackedAt, unacked)
			t.Logf("run %d killed at %s after %d sends (last %q), %d unacknowledged", run, killedAt.Format("15:04:05.000"), lines, last, len(unacked))
			if crashLogs != "" {
				dumpCrashStore(t, path)
			}
			if run == serverRestartRun {
				// Let the server deliver what the killed connection had
				// sent (the recipient's count stops moving), so that the
				// restart loses nothing on the recipient's side; then
				// restart it: every stream-management session is gone.
				// First every message the store records as acknowledged:
				// the server has it, and its restart would lose one it had
				// not yet passed on (a busy server can pause for longer than
				// quiet's second).
				acked, err := ackedIDs(path)
				if err != nil {
					t.Fatal(err)
				}
				untilReceived(t, acked, missingIDs)
				quiet(t, received)
				t.Logf("restarting the server at %s; the recipient has %d messages (%+v)", time.Now().Format("15:04:05.000"), received(), bob.Stats())
				was := bob.Stats().Reconnections
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if err := srv.Restart(ctx); err != nil {
					t.Fatal(err)
				}
				cancel()
				waitFor(t, "the recipient to reconnect", func() bool {
					st := bob.Stats()
					return st.Connected && st.Reconnections > was
				})
			}
		}
		mu.Lock()
		defer mu.Unlock()
		dupsAmbiguous, dupsResumed, dupsResent := 0, 0, 0
		dupsDropped := map[int]int{} // per dropped restart
		for i := range crashMessages {
			id := fmt.Sprintf("m%04d", i)
			n := got[id]
			if n == 0 {
				t.Errorf("%s never arrived", id)
				continue
			}
			extra := n - 1
			if a := min(ambiguous[id], extra); a > 0 {
				// Sent again on purpose: not proof of a double delivery.
				dupsAmbiguous += a
				extra -= a
				t.Logf("%s arrived %d more time(s): re-sent as not in the archive", id, a)
			}
			for _, run := range droppedRuns {
				if extra > 0 && unackedAt[run-1][id] {
					// Re-sent on the new stream bound after the server
					// dropped the session: at most once per such restart.
					dupsDropped[run]++
					extra--
					t.Logf("%s arrived again: unacknowledged at kill %d, re-sent by run %d on a new stream", id, run-1, run)
				}
			}
			if a := min(resent[id], extra); a > 0 {
				// Re-sent on a new stream after a failed resumption within
				// a run (a busy server that stopped answering, then refused
				// the resumption): the documented at-least-once fallback,
				// announced by OnResend.
				dupsResent += a
				extra -= a
				t.Logf("%s arrived %d more time(s): re-sent on a new stream after a failed resumption", id, a)
			}
			if extra > 0 {
				dupsResumed += extra
				t.Errorf("%s arrived %d times: %d duplicate(s) not explained by an ambiguous re-send or a dropped session", id, n, extra)
			}
		}
		for _, run := range droppedRuns {
			t.Logf("run %d (session dropped): %d duplicates, %d messages unacknowledged at kill %d", run, dupsDropped[run], len(unackedAt[run-1]), run-1)
			if dupsDropped[run] > len(unackedAt[run-1]) {
				t.Errorf("run %d: %d duplicates, more than the %d messages unacknowledged at kill %d", run, dupsDropped[run], len(unackedAt[run-1]), run-1)
			}
		}
		t.Logf("%d unexplained duplicates, %d of messages re-sent as not in the archive, %d re-sent after a dropped session, %d re-sent after a failed resumption within a run",
			dupsResumed, dupsAmbiguous, sum(dupsDropped), dupsResent)
		t.Logf("held messages after the restarts on %s: %d settled by the archive, %d by their receipt, %d re-sent (not found)", srv.Kind(), totalArchived, totalProved, totalResent)
		st, err := sqlite.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		delivered := 0
		for i := range crashMessages {
			id := fmt.Sprintf("m%04d", i)
			rec, err := st.Message(context.Background(), id)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			switch rec.State {
			case tracking.DeliveredToRecipient, tracking.SeenByRecipient:
				delivered++
				if got[id] == 0 {
					t.Errorf("%s is %v in the store, but the recipient never got it", id, rec.State)
				}
			case tracking.Aborted:
				t.Errorf("%s was aborted", id)
			case tracking.InTransit:
				if got[id] > 0 {
					t.Errorf("%s is IN_TRANSIT in the store, but the recipient got it", id)
				}
			}
		}
		t.Logf("%d of %d stored as DELIVERED_TO_RECIPIENT or later (the others wait for receipts that may still come)", delivered, crashMessages)
	})
}

// streamStored returns once the store holds the state of c's current
// stream, so that a kill from then on leaves the next process a stream to
// resume. Dial waits for that commit only 1 s (it logs at Warn and
// returns), which a loaded machine can exceed: the crash children say
// "up" only after this, and the parent kills only after "up". It prints a
// note when Dial returned before the store took it.
func streamStored(ctx context.Context, c *Client) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start, waited := time.Now(), false
	for !c.dur.streamSaved() {
		waited = true
		c.dur.saveSessionNow(ctx)
		select {
		case <-c.Done():
			return fmt.Errorf("the client stopped before the store took its stream's state: %w", c.Err())
		case <-ctx.Done():
			return fmt.Errorf("the stream's state was not stored within a minute: %w (%+v)", ctx.Err(), c.Stats())
		case <-time.After(10 * time.Millisecond): // a store that refused it: ask again, not in a spin
		}
	}
	if waited {
		fmt.Printf("note the stream's state was stored %v after Dial returned\n", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// quiet waits until count stops moving for a second (at most a minute).
func quiet(t *testing.T, count func() int) {
	t.Helper()
	last, since := count(), time.Now()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if n := count(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= time.Second {
			return
		}
	}
	t.Fatal("the recipient kept receiving for a minute")
}

// waitFor polls cond every 50 ms, for at most a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("waited a minute for %s", what)
}

// unackedIDs returns the ids of the messages of the store that our server
// never acknowledged: those a restart re-sends.
func unackedIDs(path string) (map[string]bool, error) {
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return unackedIn(st)
}

// ackedIDs returns the ids of the messages of the store that our server
// acknowledged: those whose state proves it (DELIVERED_TO_SERVER or
// later).
func ackedIDs(path string) ([]string, error) {
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var ids []string
	for i := range crashMessages {
		id := fmt.Sprintf("m%04d", i)
		m, err := st.Message(context.Background(), id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch m.State {
		case tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.SeenByRecipient:
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// untilReceived waits, for at most two minutes, until the recipient has
// every message of ids (missing lists those it lacks of all).
func untilReceived(t *testing.T, ids []string, missing func() []string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var lacking []string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		lacking = lacking[:0]
		for _, id := range missing() {
			if want[id] {
				lacking = append(lacking, id)
			}
		}
		if len(lacking) == 0 {
			return
		}
	}
	t.Fatalf("%s: the server acknowledged %d messages the recipient did not get in two minutes: %v", time.Now().Format("15:04:05.000"), len(lacking), lacking)
}

// unackedIn is unackedIDs on an open store.
func unackedIn(st store.Store) (map[string]bool, error) {
	ids := map[string]bool{}
	owner := store.Instance{Account: "alice@localhost", Resource: "crash"}
	err := st.Pending(context.Background(), owner, func(m store.Message) error {
		if m.State == tracking.InTransit {
			ids[m.ID] = true
		}
		return nil
	})
	return ids, err
}

func sum(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// crashServers runs f against each server, like forEachServer, with the
// servers' debug logs on and kept in crashLogs when that is set.
func crashServers(t *testing.T, f func(t *testing.T, srv *testserver.Server)) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, kind, testserver.Options{Accounts: []string{"alice", "bob"}, Debug: crashLogs != ""})
			if crashLogs != "" {
				t.Cleanup(func() {
					exec.Command("sh", "-c", "cp -r "+srv.Dir()+"/*.log "+srv.Dir()+"/logs "+crashLogs+"/ 2>/dev/null").Run()
				})
			}
			f(t, srv)
		})
	}
}

// dumpCrashStore logs the stored stream-management state and the
// unacknowledged messages with their numbers.
func dumpCrashStore(t *testing.T, path string) {
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	owner := store.Instance{Account: "alice@localhost", Resource: "crash"}
	sess, err := st.Session(context.Background(), owner)
	t.Logf("session: in %d out %d acked %d (%v)", sess.Inbound, sess.Outbound, sess.Acked, err)
	var b strings.Builder
	st.Pending(context.Background(), owner, func(m store.Message) error {
		if m.State == tracking.InTransit {
			fmt.Fprintf(&b, " %s:%d/%v", m.ID, m.Seq, m.Written)
		}
		return nil
	})
	t.Logf("unacked:%s", b.String())
}
