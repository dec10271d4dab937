package sqlite

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
)

func TestEvidenceRoundTrip(t *testing.T) {
	for _, e := range []store.Evidence{
		{},
		{From: "bob@example.net/phone"},
		{StanzaID: "sid"},
		{Condition: "service-unavailable", Text: "gone ☂"},
		{From: "r@c.example/nick", StanzaID: "x", Condition: "c", Text: string(make([]byte, 300))},
	} {
		b := encodeEvidence(e)
		if e == (store.Evidence{}) && b != nil {
			t.Errorf("empty evidence encoded as %x", b)
		}
		got, err := decodeEvidence(b)
		if err != nil || got != e {
			t.Errorf("round trip of %+v: %+v, %v", e, got, err)
		}
	}
}

func TestEvidenceCorrupt(t *testing.T) {
	for _, b := range [][]byte{
		{2},                   // unknown format
		{1},                   // fields missing
		{1, 5, 'a'},           // field longer than the record
		{1, 0, 0, 0, 0, 0},    // trailing byte
		{1, 1, 0xff, 0, 0, 0}, // not UTF-8
		{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // huge length
		{1, 0x80}, // truncated varint
	} {
		if _, err := decodeEvidence(b); !errors.Is(err, store.ErrForeign) {
			t.Errorf("decode %x: %v, want a corrupt-record error", b, err)
		}
	}
}

// FuzzDecodeEvidence: decoding never panics, and what decodes encodes back
// to the same bytes.
func FuzzDecodeEvidence(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeEvidence(store.Evidence{From: "bob@example.net/phone"}))
	f.Add(encodeEvidence(store.Evidence{From: "a", StanzaID: "b", Condition: "c", Text: "d"}))
	f.Add([]byte{1, 0x80, 0x80})
	f.Add([]byte{2, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEvidence(b)
		if err != nil {
			return
		}
		again := encodeEvidence(e)
		if e == (store.Evidence{}) {
			if e2, err := decodeEvidence(again); err != nil || e2 != e {
				t.Fatalf("empty evidence does not round-trip")
			}
			return
		}
		if string(again) != string(b) {
			t.Fatalf("decode(%x) = %+v encodes as %x", b, e, again)
		}
	})
}

// FuzzDecodeRow: the decoding of stored message and change columns never
// panics, whatever the file holds.
func FuzzDecodeRow(f *testing.F) {
	f.Add(int64(0), int64(1), int64(0), []byte{})
	f.Add(int64(255), int64(-1), int64(1<<33), []byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, state, seq, at int64, ev []byte) {
		var m store.Message
		_ = fillMessage(&m, true, false, at, at, state, at, nullInt(seq), nullInt(at))
		var c store.Change
		_ = fillChange(&c, state, sql.NullBool{}, at, ev)
		_ = fillChange(&c, state, sql.NullBool{Valid: true}, at, ev)
	})
}
