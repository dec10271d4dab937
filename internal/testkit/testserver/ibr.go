package testserver

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// registerInBand creates an account with XEP-0077 in-band registration over a
// plaintext stream: open a stream, read the features, send the register IQ,
// read the reply. It is a minimal client for the harness's own servers only.
func registerInBand(ctx context.Context, addr, domain, local, password string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("testserver: registering %s: %w", local, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	fail := func(err error) error {
		return fmt.Errorf("testserver: registering %s@%s: %w", local, domain, err)
	}
	if _, err := fmt.Fprintf(conn, "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", escape(domain)); err != nil {
		return fail(err)
	}
	dec := xml.NewDecoder(conn)
	// Skip the stream header and the features.
	if err := skipUntil(dec, "http://etherx.jabber.org/streams", "features"); err != nil {
		return fail(err)
	}
	if _, err := fmt.Fprintf(conn, "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>%s</username><password>%s</password></query></iq>", escape(local), escape(password)); err != nil {
		return fail(err)
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if start.Name.Local != "iq" {
			if err := dec.Skip(); err != nil {
				return fail(err)
			}
			continue
		}
		var reply struct {
			Type  string `xml:"type,attr"`
			Error struct {
				Inner []byte `xml:",innerxml"`
			} `xml:"error"`
		}
		if err := dec.DecodeElement(&reply, &start); err != nil {
			return fail(err)
		}
		conn.Write([]byte("</stream:stream>"))
		if reply.Type != "result" {
			return fail(fmt.Errorf("server refused: type=%q %s", reply.Type, strings.TrimSpace(string(reply.Error.Inner))))
		}
		return nil
	}
}

// skipUntil reads tokens until the end of the element {space}local.
func skipUntil(dec *xml.Decoder, space, local string) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if start, ok := tok.(xml.StartElement); ok {
			if start.Name.Space == space && start.Name.Local == local {
				return dec.Skip()
			}
			if start.Name.Local == "error" && start.Name.Space == "http://etherx.jabber.org/streams" {
				return errors.New("stream error before features")
			}
		}
	}
}

func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
