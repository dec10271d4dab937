package xmpptrack

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/testkit/child"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// inboundChild is the receiving process of TestIntegrationStoreInboundCrash:
// a client on the store that prints "up N" (N: resumptions), "got ID"
// for each message OnMessage gets, and "ack R" whenever it answers the
// server's <r/> (R: the stanzas received by then). Its OnMessage blocks
// for good on the message XMPPTRACK_INBOUND_BLOCK, after printing
// "blocked ID at R" (R: the stanzas received by then).
func inboundChild() error {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, os.Getenv("XMPPTRACK_CRASH_STORE"))
	if err != nil {
		return err
	}
	block := os.Getenv("XMPPTRACK_INBOUND_BLOCK")
	account := jid.MustParse(os.Getenv("XMPPTRACK_CRASH_JID"))
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cfg := &Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: crashLogLevel()})), Store: st, Addr: os.Getenv("XMPPTRACK_CRASH_ADDR"), AllowPlaintext: true, NoReceipts: true,
		OnMessage: func(c *Client, m *Incoming) {
			if m.ID == block {
				fmt.Println("blocked", m.ID, "at", c.sm.Resumption().Handled)
				select {}
			}
			fmt.Println("got", m.ID)
		}}
	cfg.StreamManagement.Handled = func(received uint32) uint32 {
		fmt.Println("ack", received)
		return received
	}
	c, err := Dial(dctx, account, os.Getenv("XMPPTRACK_CRASH_PASSWORD"), cfg)
	if err != nil {
		return err
	}
	if err := streamStored(ctx, c); err != nil {
		return err
	}
	fmt.Println("up", c.Stats().Resumptions)
	select {}
}

// TestIntegrationStoreInboundCrash: a process killed (SIGKILL) while its
// OnMessage is blocked on a message never acknowledged that message to the
// server, although the server asked (its acks cover only what the store
// saved as finished), so the next process on the store resumes the stream
// and gets the message again.
func TestIntegrationStoreInboundCrash(t *testing.T) {
	crashServers(t, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		path := filepath.Join(t.TempDir(), "inbound.db")
		lines := make(chan string, 100)
		child := func(block string) *exec.Cmd {
			cmd, sc := child.Start(t, nil, "^$", "XMPPTRACK_INBOUND_CHILD=1", "XMPPTRACK_CRASH_STORE="+path,
				"XMPPTRACK_CRASH_JID="+srv.JID("alice").String()+"/inbound", "XMPPTRACK_CRASH_PASSWORD="+srv.Password("alice"),
				"XMPPTRACK_CRASH_ADDR="+srv.Addr(), "XMPPTRACK_INBOUND_BLOCK="+block)
			go func() {
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			return cmd
		}
		// await returns the first line with the prefix not returned yet,
		// failing on an error.
		var seen []string
		await := func(prefix string) string {
			t.Helper()
			for i, l := range seen {
				if strings.HasPrefix(l, prefix) {
					seen = append(seen[:i:i], seen[i+1:]...)
					return l
				}
			}
			for {
				select {
				case l := <-lines:
					seen = append(seen, l)
					if strings.HasPrefix(l, "error") {
						t.Fatalf("child: %s", l)
					}
					if strings.HasPrefix(l, prefix) {
						seen = seen[:len(seen)-1]
						return l
					}
				case <-ctx.Done():
					t.Fatalf("no %q from the child", prefix)
				}
			}
		}
		bob := dialTest(t, srv, "bob", Config{})
		send := func(id string) {
			t.Helper()
			tr, err := bob.Send(ctx, Message{To: srv.JID("alice"), ID: id, Body: id, NoReceipt: true, NoMarkable: true})
			if err != nil {
				t.Fatal(err)
			}
			if st, err := tr.Wait(ctx, tracking.DeliveredToServer); err != nil {
				t.Fatalf("%s: %s, %v", id, st, err)
			}
		}

		cmd := child("in2")
		await("up")
		send("in1")
		await("got in1")
		send("in2")
		l := await("blocked in2 at ")
		at, err := strconv.Atoi(strings.TrimPrefix(l, "blocked in2 at "))
		if err != nil {
			t.Fatal(l)
		}
		// The server asks for an ack of what it sent (in3 makes it ask
		// again, in2 included): the answer does not cover in2, whose
		// OnMessage has not returned.
		send("in3")
		for {
			l := await("ack ")
			if n, _ := strconv.Atoi(strings.TrimPrefix(l, "ack ")); n >= at {
				break
			}
		}
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()

		child("")
		if l := await("up "); l != "up 1" {
			t.Fatalf("the restarted process did not resume the stream: %q", l)
		}
		await("got in2") // replayed by the server
		await("got in3")
	})
}
