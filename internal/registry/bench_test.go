package registry

import (
	"strconv"
	"testing"

	"mellium.im/xmpp/jid"
)

// BenchmarkAckByAddress measures what the client does per message when its
// stream-management callbacks report a write and an ack (sm.Stanza.To is
// the to attribute as written): the conversation key parsed from the
// address each time (ConvOf, as the client did before) against WrittenTo
// and ServerAckTo, which compare the address with the key first. Each op
// registers one message, writes and acknowledges it.
func BenchmarkAckByAddress(b *testing.B) {
	to := jid.MustParse("responder@localhost")
	for _, bc := range []struct {
		name         string
		written, ack func(r *Registry, to, id string)
	}{
		{"ConvOf", func(r *Registry, to, id string) { r.Written(ConvOf(to), id) },
			func(r *Registry, to, id string) { r.ServerAck(ConvOf(to), id) }},
		{"ByAddress", (*Registry).WrittenTo, (*Registry).ServerAckTo},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := New(Config{MaxPending: -1})
			defer r.Close()
			conv, addr := Conv(to), to.String()
			ids := make([]string, 4096)
			for i := range ids {
				ids[i] = "m" + strconv.Itoa(i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				id := ids[i%len(ids)]
				i++
				t, err := r.TryTrack(conv, id, TrackOptions{})
				if err != nil {
					b.Fatal(err)
				}
				bc.written(r, addr, id)
				bc.ack(r, addr, id)
				t.Close() // settles it: the id is free again
			}
		})
	}
}

// BenchmarkConv measures the conversation key of a message's recipient, as
// Send needs it for every message: formatted each time (Conv), and
// through a ConvCache, to one peer.
func BenchmarkConv(b *testing.B) {
	to := jid.MustParse("responder@localhost")
	b.Run("Conv", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Conv(to)
		}
	})
	b.Run("ConvCache", func(b *testing.B) {
		var cc ConvCache
		b.ReportAllocs()
		for b.Loop() {
			_ = cc.Conv(to)
		}
	})
}
