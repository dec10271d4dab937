package muc

import (
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/testkit/wirerule"
)

// TestNoCancellableContextToMellium guards the rule that this package never
// hands mellium a context another goroutine's write could suffer from:
// mellium v0.23.0's session writes arm a goroutine that, once the context
// ends, sets the connection's write deadline to the past, possibly after
// the write returned and while another goroutine writes (and a write cut
// that way leaves half a stanza on the stream). Every write goes through
// internal/wire, and answers are read by the room's observers. The race
// itself is too rare to reproduce on demand, so this test reads the
// package's code: no call to a mellium session's write or request
// methods, nor to mellium's muc or disco helpers that write with the
// caller's context (Join, Leave, GetInfo ...). The receivers allowed are
// the room itself (r) and our client (r.c, c), whose Send goes through
// internal/wire.
func TestNoCancellableContextToMellium(t *testing.T) {
	names := append(wirerule.SessionWriters, "Join", "JoinPresence", "Leave", "LeavePresence", "GetInfo", "GetInfoIQ", "GetItems", "Ping")
	wirerule.Check(t, names, func(recv string) bool {
		return recv == "r" || recv == "r.c" || recv == "c"
	})
}
