package tracking_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// A registry turns evidence from the wire into state changes. The client does
// this for you; here the evidence is reported by hand.
func ExampleRegistry() {
	reg := tracking.NewRegistry(tracking.Config{})
	defer reg.Close()

	t, err := reg.Track(context.Background(), "bob@example.org", "msg-1", tracking.TrackOptions{})
	if err != nil {
		panic(err)
	}
	reg.ServerAck("bob@example.org", "msg-1")
	fmt.Println(t.State())

	reg.Delivered("mallory@example.org", "msg-1", nil) // not the recipient: ignored
	fmt.Println(t.State())

	reg.Delivered("bob@example.org", "msg-1", nil)
	reg.Displayed("bob@example.org", "msg-1", "", nil)
	st, err := t.Wait(context.Background(), tracking.SeenByRecipient)
	fmt.Println(st, err, t.Settled())
	// Output:
	// DELIVERED_TO_SERVER
	// DELIVERED_TO_SERVER
	// SEEN_BY_RECIPIENT <nil> true
}

// A tracker made by NewMessageTracker is driven by its owner.
func ExampleMessageTracker_Wait() {
	t := tracking.NewMessageTracker("msg-2")
	t.Advance(tracking.DeliveredToServer, nil)
	t.Advance(tracking.Error, &tracking.Response{Err: errors.New("service-unavailable")})

	st, err := t.Wait(context.Background(), tracking.DeliveredToRecipient)
	fmt.Println(st, errors.Is(err, tracking.ErrFailed))
	fmt.Println(err)
	// Output:
	// ERROR true
	// tracking: error reply: service-unavailable
}
