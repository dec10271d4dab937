package xmpptrack_test

import (
	"context"
	"errors"
	"log"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/store/postgres"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// With a store on a database server, a connection that breaks during the
// write-ahead commit can leave Send unable to tell whether the message was
// recorded: ErrRecordUncertain, with an *UncertainError naming the id.
// Retry with that id (and the same message): the retry returns the
// message's tracker whether it sends the message itself or the client
// already did, having found it stored; a message never stored is stored
// and sent as usual. A new id instead could deliver the message twice.
func ExampleUncertainError() {
	ctx := context.Background()
	st, err := postgres.Open(ctx, "postgres://xmpptrack@db.example.org/xmpptrack")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	c, err := xmpptrack.Dial(ctx, jid.MustParse("alerts@example.org/a1"), "secret", &xmpptrack.Config{Store: st})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	m := xmpptrack.Message{To: jid.MustParse("oncall@example.org"), Body: "disk full on db1", Window: time.Minute}
	for range 3 {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t, err := c.Send(sctx, m)
		cancel()
		var ue *xmpptrack.UncertainError
		switch {
		case err == nil:
			log.Printf("message %s sent: %s", t.ID(), t.State())
			return
		case errors.As(err, &ue) && !errors.Is(err, tracking.ErrTimedOut):
			m.ID = ue.ID // the same message again, under its id
		case errors.Is(err, xmpptrack.ErrRecordSettled):
			log.Printf("the message ended meanwhile: %v", err) // see c.Status
			return
		default:
			log.Printf("not sent: %v", err)
			return
		}
	}
	log.Printf("still in doubt: the client sends message %s if it finds it stored", m.ID)
}
