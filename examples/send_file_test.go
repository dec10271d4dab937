package examples_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func TestExampleSendFile(t *testing.T) {
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"alice", "bob"}, HTTPUpload: true})
	bob := startResponder(t, srv, "bob", "-display-after", "0")
	dir := t.TempDir()
	write := func(name string, n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return b
	}
	logTail := write("build.log", 300<<10)
	shot := write("shot.png", 1<<20)
	base := []string{"-jid", srv.JID("alice").String(), "-addr", srv.Addr(), "-to", srv.JID("bob").String()}
	env := []string{"XMPP_PASSWORD=" + srv.Password("alice")}

	t.Run("json", func(t *testing.T) {
		args := append(base, "-plaintext", "-json", "-wait", "seen",
			"-file", filepath.Join(dir, "build.log"), "-file", filepath.Join(dir, "shot.png"), "build 1234 failed")
		r := send(t, "", env, args...)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		var urls []string
		progress := map[string]int{}
		states := map[string][]tracking.MessageState{}
		for line := range strings.Lines(r.stdout) {
			var v struct {
				File  string `json:"file"`
				Sent  int64  `json:"sent"`
				Size  int64  `json:"size"`
				URL   string `json:"url"`
				ID    string `json:"id"`
				State string `json:"state"`
			}
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			switch {
			case v.File != "":
				progress[v.File]++
				if v.Sent > v.Size {
					t.Errorf("progress past the size: %s", line)
				}
				if v.URL != "" {
					urls = append(urls, v.URL)
				}
			case v.ID != "":
				st, ok := tracking.ParseState(v.State)
				if !ok {
					t.Fatalf("state in %q", line)
				}
				states[v.ID] = append(states[v.ID], st)
			default:
				t.Fatalf("unexpected line %q", line)
			}
		}
		if len(urls) != 2 || progress["build.log"] < 3 || progress["shot.png"] < 3 {
			t.Fatalf("urls %v, progress events %v:\n%s", urls, progress, r.stdout)
		}
		if len(states) != 3 {
			t.Fatalf("%d messages, want the two files and the caption:\n%s", len(states), r.stdout)
		}
		for id, sts := range states {
			if !reached(sts, tracking.SeenByRecipient) {
				t.Errorf("%s: %v", id, sts)
			}
		}
		for i, want := range [][]byte{logTail, shot} {
			bob.expect(t, urls[i])        // the body
			bob.expect(t, " attachment ") // the out-of-band URL, same message
			if got := fetch(t, urls[i]); got != sha256.Sum256(want) {
				t.Errorf("%s: the download differs", urls[i])
			}
		}
		bob.expect(t, "build 1234 failed")
	})

	t.Run("text on a pipe", func(t *testing.T) {
		r := send(t, "", env, append(base, "-plaintext", "-file", filepath.Join(dir, "build.log"))...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// State lines only: no progress bar on a pipe.
		ids, _ := byID(parseText(t, r.stdout))
		if len(ids) != 1 {
			t.Fatalf("want one message:\n%s", r.stdout)
		}
	})

	t.Run("terminal", func(t *testing.T) {
		// script(1) (util-linux, essential on Debian) gives send a terminal.
		cmdline := strings.Join(append([]string{bin(t, "send")}, append(base, "-plaintext", "-file", filepath.Join(dir, "shot.png"))...), " ")
		cmd := exec.Command("script", "-qec", cmdline, "/dev/null")
		cmd.Env = append(append(os.Environ(), gorace), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(string(out), "shot.png  [##############################] 100%") || !strings.Contains(string(out), "DELIVERED_TO_RECIPIENT") {
			t.Fatalf("no progress bar reaching 100%% and no state lines:\n%q", out)
		}
	})

	t.Run("plain HTTP refused", func(t *testing.T) {
		// TLS for XMPP, so no -plaintext: the http:// upload URL is refused
		// and nothing is sent.
		r := send(t, "", env, append(base, "-insecure", "-file", filepath.Join(dir, "build.log"), "caption")...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "plain-HTTP") || !strings.Contains(r.stderr, "nothing was sent") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		r := send(t, "", env, append(base, "-plaintext", "-file", filepath.Join(dir, "nope"), "caption")...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "nothing was sent") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})
}

// expectBoth waits for a line of the responder's output that holds a and b.
func expectBoth(t *testing.T, r *responder, a, b string) {
	t.Helper()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Fatalf("responder exited before printing %q and %q", a, b)
			}
			if strings.Contains(line, a) && strings.Contains(line, b) {
				return
			}
		case <-timeout.C:
			t.Fatalf("responder never printed %q and %q", a, b)
		}
	}
}

func fetch(t *testing.T, url string) [32]byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, resp.Body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return sha256.Sum256(b.Bytes())
}
