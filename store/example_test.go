package store_test

import (
	"fmt"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Next decides, for every implementation, whether a recorded change applies.
func ExampleNext() {
	// A receipt after the marker changes nothing.
	to, settled, changed := store.Next(tracking.SeenByRecipient, true, tracking.DeliveredToRecipient)
	fmt.Println(to, settled, changed)
	// A window that ends after a receipt settles the message in its state.
	to, settled, changed = store.Next(tracking.DeliveredToRecipient, false, tracking.TimedOut)
	fmt.Println(to, settled, changed)
	// Output:
	// SEEN_BY_RECIPIENT true false
	// DELIVERED_TO_RECIPIENT true true
}
