package stanza_test

import (
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/xmpptrack/xmpptrack/stanza"
	xstanza "mellium.im/xmpp/stanza"
)

func ExampleClassify() {
	// The error part of <message type='error'/> bouncing an outgoing message.
	bounce := xstanza.Error{Type: xstanza.Wait, Condition: xstanza.RecipientUnavailable}

	var err error = stanza.Classify(bounce)
	fmt.Println(err)
	fmt.Println(errors.Is(err, stanza.ErrOffline))

	var se xstanza.Error
	if errors.As(err, &se) {
		fmt.Println(se.Type, se.Condition)
	}
	// Output:
	// stanza: recipient offline: recipient-unavailable
	// true
	// wait recipient-unavailable
}

func ExampleParseMessage() {
	// A receipt as Prosody delivers it.
	const in = `<message type='chat' to='alice@localhost/smoke' id='kit-rcpt-b41d04' from='bob@localhost/smoke'>` +
		`<received id='kit-msg-ad890374' xmlns='urn:xmpp:receipts'/>` +
		`<stanza-id id='2b_FLN4tWGF_I7TgIY7yJo9X' xmlns='urn:xmpp:sid:0' by='alice@localhost'/></message>`

	d := xml.NewDecoder(strings.NewReader(in))
	tok, _ := d.Token()
	ev, err := stanza.ParseMessage(tok.(xml.StartElement), d)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("from:", ev.From.Bare())
	fmt.Println("receipt for:", ev.Receipt)
	fmt.Println("archived by:", ev.StanzaIDs[0].By)
	// Output:
	// from: bob@localhost
	// receipt for: kit-msg-ad890374
	// archived by: alice@localhost
}

func ExampleAck() {
	e := xml.NewEncoder(os.Stdout)
	if _, err := (stanza.Ack{H: 4}).WriteXML(e); err != nil {
		fmt.Println(err)
	}
	e.Flush()
	fmt.Println()

	var a stanza.Ack
	err := xml.Unmarshal([]byte(`<a xmlns='urn:xmpp:sm:3' h='-1'/>`), &a)
	fmt.Println(err, errors.Is(err, stanza.ErrInvalidH))
	// Output:
	// <a xmlns="urn:xmpp:sm:3" h="4"></a>
	// stanza: <a/> attribute h: h is not an unsignedInt true
}
