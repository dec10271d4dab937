package interop_test

import (
	"fmt"

	"github.com/xmpptrack/xmpptrack/internal/testkit/interop"
)

// Peers describe what they do as JSON lines; ParseEvent decodes one.
func ExampleParseEvent() {
	line := `{"event":"marker_sent","id":"abc","message_id":"abc","to":"alice@localhost","type":"chat","by":"message-id","t":1700000000.25}`
	ev, err := interop.ParseEvent([]byte(line))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Kind, ev.ID, ev.To, ev.By, ev.Time.UTC().Format("15:04:05.00"))
	// Output: marker_sent abc alice@localhost message-id 22:13:20.25
}
