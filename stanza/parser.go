package stanza

import (
	"encoding/xml"

	"mellium.im/xmpp/jid"
)

// parserJIDs is how many addresses a Parser remembers: enough for the two
// parties of a conversation, our bare JID (carbons) and one more.
const parserJIDs = 4

// Parser is ParseMessage for a stream of messages. It remembers the last
// few addresses it parsed, so that a run of messages between the same
// parties does not pay for the PRECIS rules of jid.Parse again and again,
// which otherwise make up most of ParseMessage's time and allocations.
// Every address is still checked: a remembered JID is used only for exactly
// the string it was parsed from, and only addresses that jid.Parse accepted
// are remembered, so a Parser returns what ParseMessage returns, errors
// included.
//
// The zero value is ready to use. A Parser is not safe for concurrent use:
// give each stream its own.
type Parser struct {
	jids [parserJIDs]parsedJID
	next uint8
}

type parsedJID struct {
	s string
	j jid.JID
}

// ParseMessage is the package's ParseMessage with p's memory of addresses.
func (p *Parser) ParseMessage(start xml.StartElement, r xml.TokenReader) (Evidence, error) {
	var ev Evidence
	t := tokens{r: r, jids: p}
	verr, err := parseMessage(&t, start, &ev, false)
	if err != nil {
		return ev, err
	}
	return ev, verr
}

// parse returns jid.Parse(s), from memory if s was parsed before.
func (p *Parser) parse(s string) (jid.JID, error) {
	for i := range p.jids {
		if c := &p.jids[i]; c.s == s && s != "" {
			return c.j, nil
		}
	}
	j, err := jid.Parse(s)
	if err != nil {
		return j, err
	}
	p.jids[p.next%parserJIDs] = parsedJID{s: s, j: j}
	p.next++
	return j, nil
}
