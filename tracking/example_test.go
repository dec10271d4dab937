package tracking_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/xmpptrack/xmpptrack/tracking"
)

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
