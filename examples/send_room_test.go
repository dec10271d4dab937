package examples_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestExampleSendRoom: examples/send with -muc names who saw the message
// and who is in the room, and a room address without -muc, or -muc with a
// person's address, fails with a hint.
func TestExampleSendRoom(t *testing.T) {
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"alice", "bob"}})
	room := "team@" + srv.MUCDomain()
	passwordFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte(srv.Password("alice")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-jid", srv.JID("alice").String(), "-addr", srv.Addr(), "-password-file", passwordFile, "-insecure"}
	with := func(args ...string) []string { return append(slices.Clone(base), args...) }

	t.Run("alone", func(t *testing.T) {
		r := send(t, "", nil, with("-to", "empty@"+srv.MUCDomain(), "-muc", "alice", "anyone?")...)
		if r.code != 0 || !strings.Contains(r.stderr, "alone") {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		_, states := byID(parseText(t, r.stdout))
		for _, st := range states {
			if !reached(st, tracking.DeliveredToRecipient) {
				t.Fatalf("states %v", st)
			}
		}
	})

	bob := startResponder(t, srv, "bob", "-display-after", "0", "-muc", room+"/bob")
	t.Run("seen_by", func(t *testing.T) {
		r := send(t, "", nil, with("-to", room, "-muc", "alice", "-wait", "seen", "standup?")...)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "with 1 other occupant: bob") {
			t.Fatalf("no occupant count on stderr:\n%s", r.stderr)
		}
		var seenLine string
		for _, c := range parseText(t, r.stdout) {
			if c.state == tracking.SeenByRecipient {
				seenLine = c.rest
			}
		}
		if seenLine != "by bob" {
			t.Fatalf("SEEN line %q, want \"by bob\":\n%s", seenLine, r.stdout)
		}
		bob.expect(t, "standup?")
	})
	t.Run("seen_by_json", func(t *testing.T) {
		r := send(t, "", nil, with("-to", room, "-muc", "alice", "-wait", "seen", "-json", "retro?")...)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		var found bool
		for s := range strings.Lines(r.stdout) {
			var l struct {
				State  string   `json:"state"`
				SeenBy []string `json:"seen_by"`
			}
			if err := json.Unmarshal([]byte(s), &l); err != nil {
				t.Fatalf("line %q: %v", s, err)
			}
			if l.State == "SEEN_BY_RECIPIENT" {
				found = slices.Equal(l.SeenBy, []string{"bob"})
			} else if l.SeenBy != nil {
				t.Fatalf("seen_by on %s", s)
			}
		}
		if !found {
			t.Fatalf("no SEEN_BY_RECIPIENT line with seen_by [bob]:\n%s", r.stdout)
		}
	})
	t.Run("room_without_muc", func(t *testing.T) {
		r := send(t, "", nil, with("-to", room, "-timeout", "3s", "hello room")...)
		if r.code != 2 || !strings.Contains(r.stderr, "is this a room? use -muc NICK") {
			t.Fatalf("exit %d, want 2 and the -muc hint\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("muc_with_person", func(t *testing.T) {
		start := time.Now()
		r := send(t, "", nil, with("-to", srv.JID("bob").String(), "-muc", "alice", "-timeout", "15s", "hello")...)
		if r.code != 1 || !strings.Contains(r.stderr, "not a group chat") || !strings.Contains(r.stderr, "without -muc") {
			t.Fatalf("exit %d, want 1 and the hint\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r.stdout != "" {
			t.Fatalf("sent something:\n%s", r.stdout)
		}
		t.Logf("failed after %v: %s", time.Since(start).Round(time.Millisecond), r.stderr)
	})
}
