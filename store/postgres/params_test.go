package postgres

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
)

// TestParamsAsPgx checks the committer's encoding of xmpptrack_commit's
// arguments against pgx's own binary encoding of the same values (which
// the store used before): empty arrays, NULLs (a settled message's raw
// stanza, no deadline), times before 1970 and 2000 and with nanoseconds.
func TestParamsAsPgx(t *testing.T) {
	at := time.Date(2026, 12, 6, 15, 4, 5, 123456789, time.FixedZone("x", 3600))
	old := time.Date(1969, 7, 20, 20, 17, 40, 999, time.UTC)
	for _, a := range []*args{
		{}, // a group of sessions only, say: every array empty
		{
			mID: []string{"a", "ü€"}, mAccount: []string{"x@example.org", ""}, mResource: []string{"r", "r"},
			mRcpt: []string{"b@example.org", "c@example.org"}, mThread: []string{"", "t"}, mChannel: []string{"c", ""},
			mRoom: []bool{false, true}, mSettled: []bool{true, false}, mRaw: [][]byte{nil, []byte("<message/>")},
			mCreated: []time.Time{at, old}, mDeadline: []time.Time{{}, at}, mState: []int16{0, 3}, mKey: []int32{0, 1},
			lID: []string{"a"}, cLock: []int32{1}, cState: []int16{2}, cAt: []time.Time{at}, cFrom: []string{"f"},
			cSID: []string{""}, cCond: []string{"gone"}, cText: []string{"t"}, cKey: []int32{2},
			wLock: []int32{1}, wSeq: []int64{1<<32 - 1}, sAccount: []string{"x"}, sResource: []string{"r"},
			sJID: []string{"x/r"}, sSMID: []string{"id"}, sLocation: []string{""}, sMax: []int64{300},
			sIn: []int64{0}, sOut: []int64{-1}, sAcked: []int64{5}, sUpdated: []time.Time{old},
		},
		{mRaw: [][]byte{[]byte("x"), {}}, mDeadline: []time.Time{at, at}, mCreated: []time.Time{at, at}},
	} {
		got := a.encode()
		deadlines := make([]pgtype.Timestamptz, len(a.mDeadline))
		for i, d := range a.mDeadline {
			deadlines[i] = pgtype.Timestamptz{Time: d, Valid: !d.IsZero()}
		}
		want := []struct {
			oid uint32
			v   any
		}{
			{pgtype.Int2ArrayOID, graph}, {pgtype.Int4OID, int32(numStates)},
			{pgtype.TextArrayOID, a.mID}, {pgtype.TextArrayOID, a.mAccount}, {pgtype.TextArrayOID, a.mResource},
			{pgtype.TextArrayOID, a.mRcpt}, {pgtype.BoolArrayOID, a.mRoom}, {pgtype.TextArrayOID, a.mThread},
			{pgtype.TextArrayOID, a.mChannel}, {pgtype.ByteaArrayOID, a.mRaw},
			{pgtype.TimestamptzArrayOID, a.mCreated}, {pgtype.TimestamptzArrayOID, deadlines},
			{pgtype.Int2ArrayOID, a.mState}, {pgtype.BoolArrayOID, a.mSettled}, {pgtype.Int4ArrayOID, a.mKey},
			{pgtype.TextArrayOID, a.lID},
			{pgtype.Int4ArrayOID, a.cLock}, {pgtype.Int2ArrayOID, a.cState}, {pgtype.TimestamptzArrayOID, a.cAt},
			{pgtype.TextArrayOID, a.cFrom}, {pgtype.TextArrayOID, a.cSID}, {pgtype.TextArrayOID, a.cCond},
			{pgtype.TextArrayOID, a.cText}, {pgtype.Int4ArrayOID, a.cKey},
			{pgtype.Int4ArrayOID, a.wLock}, {pgtype.Int8ArrayOID, a.wSeq},
			{pgtype.TextArrayOID, a.sAccount}, {pgtype.TextArrayOID, a.sResource}, {pgtype.TextArrayOID, a.sJID},
			{pgtype.TextArrayOID, a.sSMID}, {pgtype.TextArrayOID, a.sLocation}, {pgtype.Int8ArrayOID, a.sMax},
			{pgtype.Int8ArrayOID, a.sIn}, {pgtype.Int8ArrayOID, a.sOut}, {pgtype.Int8ArrayOID, a.sAcked},
			{pgtype.TimestamptzArrayOID, a.sUpdated},
		}
		if len(got) != len(want) {
			t.Fatalf("%d parameters, want %d", len(got), len(want))
		}
		m := pgtype.NewMap()
		for i, w := range want {
			v := w.v
			if isNilSlice(v) {
				v = emptyOf(v) // the committer never passes NULL for an array
			}
			b, err := m.Encode(w.oid, pgtype.BinaryFormatCode, v, nil)
			if err != nil {
				t.Fatalf("$%d: pgx: %v", i+1, err)
			}
			if !bytes.Equal(got[i], b) {
				t.Errorf("$%d (%T %v):\n got %x\nwant %x", i+1, w.v, w.v, got[i], b)
			}
		}
	}
}

func isNilSlice(v any) bool {
	switch v := v.(type) {
	case []string:
		return v == nil
	case []bool:
		return v == nil
	case [][]byte:
		return v == nil
	case []time.Time:
		return v == nil
	case []pgtype.Timestamptz:
		return v == nil
	case []int16:
		return v == nil
	case []int32:
		return v == nil
	case []int64:
		return v == nil
	}
	return false
}

func emptyOf(v any) any {
	switch v.(type) {
	case []string:
		return []string{}
	case []bool:
		return []bool{}
	case [][]byte:
		return [][]byte{}
	case []time.Time:
		return []time.Time{}
	case []pgtype.Timestamptz:
		return []pgtype.Timestamptz{}
	case []int16:
		return []int16{}
	case []int32:
		return []int32{}
	case []int64:
		return []int64{}
	}
	return v
}

// TestInt4Array decodes what pgx encodes, and refuses what the function
// cannot return.
func TestInt4Array(t *testing.T) {
	m := pgtype.NewMap()
	for _, want := range [][]int32{{}, {7}, {0, -1, 1 << 30}} {
		b, err := m.Encode(pgtype.Int4ArrayOID, pgtype.BinaryFormatCode, want, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := int4Array(nil, b)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%v: got %v, %v", want, got, err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v: got %v", want, got)
			}
		}
	}
	for _, bad := range []struct {
		oid uint32
		v   any
	}{{pgtype.Int8ArrayOID, []int64{1}}, {pgtype.Int4ArrayOID, []*int32{nil}}} {
		b, err := m.Encode(bad.oid, pgtype.BinaryFormatCode, bad.v, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := int4Array(nil, b); err == nil {
			t.Errorf("%v: decoded as %v", bad.v, got)
		}
	}
	// PostgreSQL sends an empty array without a dimension.
	if got, err := int4Array(nil, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23}); err != nil || len(got) != 0 {
		t.Errorf("empty array without a dimension: %v, %v", got, err)
	}
	if _, err := int4Array(nil, []byte{0, 0}); err == nil {
		t.Error("2 bytes decoded")
	}
}

// TestDuplicates: within a group, a batch holding an id that it or an
// earlier batch holds fails; the ids of a failed batch fail no later one.
func TestDuplicates(t *testing.T) {
	batch := func(ids ...string) *groupcommit.Request {
		b := &store.Batch{}
		for _, id := range ids {
			b.Messages = append(b.Messages, store.Message{ID: id})
		}
		return &groupcommit.Request{Batch: b}
	}
	s := &Store{}
	for round := range 2 { // the map is reused
		errs, _ := s.duplicates([]*groupcommit.Request{
			batch("a", "b"),
			batch("c", "a"), // a: batch 0's
			batch("c"),      // c: batch 1 failed, so it is free
			batch("d", "d"), // itself
			batch("d", "e"), // d: batch 3 failed
			batch(),
			batch("e"), // batch 4's
		})
		want := []bool{false, true, false, true, false, false, true}
		for i, err := range errs {
			if (err != nil) != want[i] || (err != nil && !errors.Is(err, store.ErrExists)) {
				t.Errorf("round %d, batch %d: %v", round, i, err)
			}
		}
		if len(s.seen) != 0 {
			t.Errorf("round %d: %d ids kept", round, len(s.seen))
		}
	}
}
