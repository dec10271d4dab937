package xmpptrack

import (
	"errors"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestInputLimitReconnects: a server that sends more than an input limit
// (here 200 KiB of whitespace keepalives, over the 64 KiB default; a
// 2 MiB body, over the 1 MiB default) loses the connection, and the
// client reconnects, resumes, and goes on sending.
func TestInputLimitReconnects(t *testing.T) {
	for _, tc := range []struct {
		name, flood string
		what        string
	}{
		{"whitespace", strings.Repeat(" ", 200<<10), "whitespace"},
		{"body", `<message from='bob@example.org/pc' id='big' type='chat'><body>` + strings.Repeat("x", 2<<20) + `</body></message>`, "stanza"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newPeerServer(t)
			lost := make(chan error, 1)
			c := dialPeer(t, srv, Config{})
			c.Observe(Observer{Disconnected: func(err error) {
				select {
				case lost <- err:
				default:
				}
			}})
			pc := srv.next(t)
			first := sendAcked(t, c, Message{To: bob, Body: "before"})
			go pc.write(tc.flood) // blocks once the client stops reading
			pc2 := srv.next(t)
			if !pc2.resumed {
				t.Error("the next connection did not resume the stream")
			}
			var le *sm.LimitError
			if err := <-lost; !errors.As(err, &le) || le.What != tc.what {
				t.Errorf("connection lost with %v, want a %s *sm.LimitError", err, tc.what)
			}
			sendAcked(t, c, Message{To: bob, Body: "after"})
			wantState(t, first, tracking.DeliveredToServer)
			pc.conn.Close()
		})
	}
}
