package sm_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/sm"
)

// The tees count what mellium reads and writes. Here they are fed by hand
// with what a client would write and read on one connection.
func ExampleState_Tees() {
	st := sm.New(sm.Config{
		OnAcked: func(s sm.Stanza) { fmt.Println("acked", s.Name, s.ID, "to", s.To) },
	})
	in, out := st.Tees()
	header := `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`

	io.WriteString(out, header)
	io.WriteString(out, `<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	io.WriteString(out, `<message xmlns='jabber:client' id='a1' to='juliet@example.com'><body>hi</body></message>`)
	io.WriteString(out, `<presence xmlns='jabber:client' id='p1'/>`)

	io.WriteString(in, header)
	io.WriteString(in, `<enabled xmlns='urn:xmpp:sm:3' id='some-id' resume='true'/>`)
	io.WriteString(in, `<message from='juliet@example.com/balcony'><body>hello</body></message>`)

	info := st.Info()
	fmt.Println("sent", info.Sent, "received", info.Handled, "unacknowledged", info.Unacked)
	// Output:
	// sent 2 received 1 unacknowledged 2
}

// One connection of a client, in the order the package requires. A real
// client runs this in a loop, with backoff, for as long as it is online.
func Example_connect() {
	ctx := context.Background()
	addr := jid.MustParse("romeo@example.net")
	st := sm.New(sm.Config{
		OnAcked: func(s sm.Stanza) { log.Printf("server has %s", s.ID) },
		OnLost:  func(s sm.Stanza) { log.Printf("%s was lost", s.ID) },
	})

	conn, err := net.Dial("tcp", "example.net:5222")
	if err != nil {
		log.Fatal(err)
	}
	in, out := st.Tees()
	s, err := xmpp.NewSession(ctx, addr.Domain(), addr, conn, 0,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{
				Features: []xmpp.StreamFeature{
					xmpp.StartTLS(nil),
					// xmpp.SASL(...),
					st.BindOrResume(xmpp.BindResource()),
				},
				TeeIn:  in,
				TeeOut: out,
			}
		}))
	if err != nil {
		conn.Close()
		log.Fatal(err)
	}
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := st.Start(connCtx, s); err != nil {
		conn.Close()
		log.Fatal(err)
	}
	// The application may send on s from now on, calling st.Reserve(ctx)
	// and st.Pace(ctx) before each send, and releasing their Slots after
	// it.
	err = st.Serve(s, nil)
	conn.Close()
	log.Printf("connection ended (%v); resumable: %v", err, st.Info().Resumable)
}
