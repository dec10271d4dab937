package xmpptrack

import (
	"encoding/xml"
	"io"
	"testing"

	"mellium.im/xmlstream"
)

// BenchmarkTapOnMessage measures an incoming markable chat message from a
// person's full JID with Config.OnMessage set, up to its callback: the tap
// reads, parses and numbers it (see arrived), queues its callback, and the
// callback's goroutine remembers it for MarkDisplayed. Receipts are off, so
// that the outbox takes no part. Each operation's callback runs before the
// benchmark ends (the callbacks run in order: the last one queued runs
// last), so ns/op and the process's CPU time both count both goroutines.
func BenchmarkTapOnMessage(b *testing.B) {
	var delivered int
	c := newTapClient(b, Config{NoReceipts: true, OnMessage: func(*Client, *Incoming) { delivered++ }})
	h := c.tap(nil)
	s := recordStanza(b, benchChat)
	var rw xmlstream.TokenReadEncoder = struct {
		xml.TokenReader
		xmlstream.Encoder
	}{s, xml.NewEncoder(io.Discard)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.pos = 0
		start := s.start
		if err := h.HandleXMPP(rw, &start); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{})
	c.ev.push(func() { close(done) })
	<-done
	b.StopTimer()
	if delivered != b.N {
		b.Fatalf("%d callbacks ran for %d messages", delivered, b.N)
	}
}
