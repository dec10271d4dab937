package wire

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// tcpSession returns a ready session over loopback TCP whose peer discards
// what it reads.
func tcpSession(b *testing.B) *xmpp.Session {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
		io.Copy(io.Discard, c)
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	peer := <-accepted
	b.Cleanup(func() { conn.Close(); peer.Close() })
	ready := func(context.Context, *stream.Info, *stream.Info, *xmpp.Session, any) (xmpp.SessionState, io.ReadWriter, any, error) {
		return xmpp.Ready, nil, nil, nil
	}
	s, err := xmpp.NewSession(b.Context(), jid.MustParse("example.org"), jid.MustParse("alice@example.org"), conn, 0, ready)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// receipt is a receipt as the client writes one.
func receipt() xml.TokenReader {
	start := xml.StartElement{Name: xml.Name{Space: "jabber:client", Local: "message"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "to"}, Value: "bob@example.org/pc"},
		{Name: xml.Name{Local: "type"}, Value: "chat"},
		{Name: xml.Name{Local: "id"}, Value: "AAAAAAAAAAAAAAAA"},
	}}
	inner := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "urn:xmpp:receipts", Local: "received"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "id"}, Value: "0123456789abcdef"},
	}})
	return xmlstream.Wrap(inner, start)
}

// BenchmarkWrite compares ways of writing stanzas, per stanza: mellium's
// Send, Write of one stanza, and Write of 64 stanzas per call (each still
// flushed on its own).
func BenchmarkWrite(b *testing.B) {
	b.Run("Session.Send", func(b *testing.B) {
		s := tcpSession(b)
		for b.Loop() {
			if err := s.Send(context.Background(), receipt()); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("Write/batch=%d", batch), func(b *testing.B) {
			s := tcpSession(b)
			rs := make([]xml.TokenReader, batch)
			for i := 0; i < b.N; i += batch {
				for k := range rs {
					rs[k] = receipt()
				}
				if _, err := Write(context.Background(), s, rs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriteContext measures Write of one stanza with a context that
// can never end (context.Background: no watch registered) and with one
// that can (context.WithCancel: a watch per write).
func BenchmarkWriteContext(b *testing.B) {
	for _, bc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"Background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"WithCancel", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := tcpSession(b)
			ctx, cancel := bc.ctx()
			defer cancel()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Write(ctx, s, receipt()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
