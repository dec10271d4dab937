package trackcore

import (
	"testing"

	"mellium.im/xmpp/jid"
)

// TestRoomErrorOnlyFromTheRoom: in a group chat an occupant's address
// (room@service/nick) has the room's bare JID, and the room forwards the
// error messages occupants send each other: only the room's bare JID, its
// service or our server can put a room message into Error.
func TestRoomErrorOnlyFromTheRoom(t *testing.T) {
	const room = "ops@conference.example.org"
	for _, tc := range []struct {
		from string
		want MessageState
	}{
		{room + "/carol", InTransit},
		{room + "/alice", InTransit},
		{room, Error},
		{"conference.example.org", Error},
		{"", Error},
	} {
		t.Run(tc.from, func(t *testing.T) {
			r := NewRegistry(Config[Response]{})
			m := track(t, r, room, "m1", TrackOptions{Room: true})
			var from jid.JID
			if tc.from != "" {
				from = jid.MustParse(tc.from)
			}
			r.ErrorReply(from, "m1", &Response{Err: errReply})
			if m.State() != tc.want {
				t.Fatalf("state %v, want %v", m.State(), tc.want)
			}
		})
	}
}
