package xmpptrack_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// A send-only bot: log in, send, wait for the receipt, log out.
func ExampleSendOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := xmpptrack.Message{
		To:     jid.MustParse("oncall@example.org"),
		Body:   "disk full on db1",
		Window: 30 * time.Second,
	}
	id, st, err := xmpptrack.SendOnce(ctx, jid.MustParse("alerts@example.org"), "secret", m, &xmpptrack.OnceOptions{
		Until: tracking.DeliveredToRecipient,
		Config: xmpptrack.Config{OnMessage: func(_ *xmpptrack.Client, in *xmpptrack.Incoming) {
			log.Printf("reply from %s: %s", in.From, in.Body)
		}},
	})
	log.Printf("message %s: %s (%v)", id, st, err)
}

// A program that sends more keeps its Client and waits per message.
func ExampleClient_SendAndWait() {
	ctx := context.Background()
	c, err := xmpptrack.Dial(ctx, jid.MustParse("alerts@example.org"), "secret", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, body := range []string{"build 41 failed", "build 42 passed"} {
		m := xmpptrack.Message{To: jid.MustParse("team@example.org"), Body: body}
		id, st, err := c.SendAndWait(ctx, m, tracking.DeliveredToServer)
		log.Printf("%s: %s (%v)", id, st, err)
	}
}

// The errors of SendOnce and SendAndWait are tested with errors.Is. Here a
// tracker is driven by hand to produce the errors the client returns for an
// error reply and for the end of the tracking window.
func ExampleSendOnce_errors() {
	describe := func(err error) string {
		switch {
		case err == nil:
			return "reached"
		case errors.Is(err, xmpptrack.ErrAuth):
			return "fix the password"
		case errors.Is(err, stanza.ErrNotAvailable), errors.Is(err, stanza.ErrInvalidHandle):
			return "the recipient does not exist or is unreachable"
		case errors.Is(err, stanza.ErrOffline):
			return "the recipient is offline: try later"
		case errors.Is(err, xmpptrack.ErrConnect), errors.Is(err, stanza.ErrDisconnected):
			return "network trouble: retry"
		case errors.Is(err, stanza.ErrNetwork):
			return "the recipient's server is unreachable: retry later"
		case errors.Is(err, tracking.ErrTimedOut):
			return "no proof within the window: the message may still arrive"
		}
		return "other: " + err.Error()
	}
	ctx := context.Background()

	bounced := tracking.NewMessageTracker("m1")
	bounced.Advance(tracking.Error, &tracking.Response{
		Err: stanza.Classify(xstanza.Error{Type: xstanza.Cancel, Condition: xstanza.ServiceUnavailable}),
	})
	_, err := bounced.Wait(ctx, tracking.DeliveredToRecipient)
	fmt.Println(describe(err))

	late := tracking.NewMessageTracker("m2")
	late.Advance(tracking.DeliveredToServer, nil)
	late.Advance(tracking.TimedOut, nil)
	_, err = late.Wait(ctx, tracking.DeliveredToRecipient)
	fmt.Println(describe(err))

	fmt.Println(describe(fmt.Errorf("login: %w", xmpptrack.ErrAuth)))
	// Output:
	// the recipient does not exist or is unreachable
	// no proof within the window: the message may still arrive
	// fix the password
}

// NewID's ids are random (96 bits), URL-safe and 16 characters long. (The
// ids Send makes for a message without one are 22 characters, an encrypted
// counter.) The id is the
// message's id attribute and its XEP-0359 origin-id, and the token that
// SendOnce returns.
func ExampleNewID() {
	id := xmpptrack.NewID()
	fmt.Println(len(id), id != xmpptrack.NewID())
	// Output: 16 true
}

// A bot that answers each message in its thread and marks it displayed.
// OnMessage runs on a goroutine of the library, one message at a time, so
// it may send, wait, or even Close the client.
func ExampleConfig_onMessage() {
	ctx := context.Background()
	cfg := &xmpptrack.Config{OnMessage: func(c *xmpptrack.Client, m *xmpptrack.Incoming) {
		if m.Delay.IsZero() { // not room history or an offline message
			if _, err := c.Send(ctx, m.Reply("you said: "+m.Body)); err != nil {
				log.Printf("reply to %s: %v", m.From, err)
			}
		}
		c.MarkConversation(m) // the sender's, the room's, or a room occupant's
	}}
	c, err := xmpptrack.Dial(ctx, jid.MustParse("echo@example.org"), "secret", cfg)
	if err != nil {
		log.Fatal(err)
	}
	<-c.Done()
}

// A Config for a test server on loopback: no TLS, quick reconnection, a
// short tracking window. The zero Config is the production default.
func ExampleConfig() {
	cfg := xmpptrack.Config{
		Addr:           "127.0.0.1:5222",
		AllowPlaintext: true, // loopback tests only
		Window:         10 * time.Second,
		MinBackoff:     50 * time.Millisecond,
		MaxBackoff:     time.Second,
	}
	c, err := xmpptrack.Dial(context.Background(), jid.MustParse("bot@localhost"), "secret", &cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// Reply answers in the same thread, to the sender, or to the room for a
// group chat message.
func ExampleIncoming_Reply() {
	chat := &xmpptrack.Incoming{From: jid.MustParse("bob@example.org/phone"), Type: xstanza.ChatMessage, Thread: "t1", Body: "status?"}
	room := &xmpptrack.Incoming{
		From: jid.MustParse("ops@conference.example.org/carol"), Type: xstanza.GroupChatMessage,
		Room: jid.MustParse("ops@conference.example.org"), Nick: "carol", Body: "status?",
	}
	for _, m := range []*xmpptrack.Incoming{chat, room} {
		r := m.Reply("all green")
		fmt.Println(r.To, r.Type, r.Thread)
	}
	// Output:
	// bob@example.org/phone chat t1
	// ops@conference.example.org groupchat
}
