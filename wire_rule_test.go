package xmpptrack

import (
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/testkit/wirerule"
)

// TestNoContextToMellium guards the rule that the client never hands
// mellium a context: mellium v0.23.0's session writes arm a goroutine that,
// once the context ends, sets the connection's write deadline to the past,
// possibly after the write returned and while another goroutine writes
// (and a write cut that way leaves half a stanza on the stream); its
// request helpers (carbons.Enable, UnmarshalIQ ...) also leave a goroutine
// waiting for an answer a dead session never gives. Every write goes
// through internal/wire (or the stream management State's SendAck, which
// does not hand its context to mellium either), and answers are read by
// the tap. The race is too rare to reproduce on demand, so this test reads
// the package's code: no call to a mellium session's write or request
// methods, or to mellium's carbons helpers. The only receivers allowed for
// those names are the client itself (c), whose Send goes through
// internal/wire, and encoding/xml's encoders.
func TestNoContextToMellium(t *testing.T) {
	names := append(wirerule.SessionWriters, "Enable", "EnableIQ", "Disable", "DisableIQ", "Ping")
	wirerule.Check(t, names, func(recv string) bool {
		return recv == "c" || strings.HasPrefix(recv, "xml.")
	})
}
