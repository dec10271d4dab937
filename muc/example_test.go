package muc_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Join takes the room's address with our nick as its resource.
func Example_roomAddress() {
	room := jid.MustParse("ops@conference.example.org")
	addr, err := room.WithResource("deploybot")
	if err != nil {
		panic(err) // an invalid nick
	}
	fmt.Println(addr)
	// Output: ops@conference.example.org/deploybot
}

// A CI notifier: join, post, wait until somebody has seen it, leave.
func ExampleJoin() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := xmpptrack.Dial(ctx, jid.MustParse("ci@example.org"), "secret", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	r, err := muc.Join(ctx, c, jid.MustParse("ops@conference.example.org/ci"), nil)
	if err != nil {
		log.Fatal(err) // errors.Is(err, muc.ErrNotARoom) for a person's address
	}
	defer r.Leave(ctx, "done")
	if len(r.Occupants()) == 0 {
		log.Print("nobody else is in the room: the message will be distributed to nobody")
	}

	t, err := r.Send(ctx, "release 1.4 is out")
	if err != nil {
		log.Fatal(err)
	}
	if st, err := t.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
		log.Fatalf("the room did not take it: %s, %v", st, err)
	}
	if _, err := t.Wait(ctx, tracking.SeenByRecipient); err == nil {
		for _, o := range r.SeenBy(t) {
			log.Printf("seen by %s (occupant-id %q, address %v)", o.Nick, o.OccupantID, o.JID)
		}
	}
}
