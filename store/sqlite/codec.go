package sqlite

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// The evidence of a change is stored as one blob: a format byte (1), then
// From, StanzaID, Condition and Text, each as a uvarint length and that many
// bytes of UTF-8. No evidence at all is stored as NULL. This keeps a change
// row small (most changes carry one field or none).
const evidenceV1 = 1

// maxField bounds one decoded field.
const maxField = 1 << 20

// errCorrupt reports a stored record that does not decode.
var errCorrupt = fmt.Errorf("sqlite: corrupt record: %w", store.ErrForeign)

func encodeEvidence(e store.Evidence) []byte {
	if e == (store.Evidence{}) {
		return nil
	}
	n := 1 + 4*binary.MaxVarintLen32 + len(e.From) + len(e.StanzaID) + len(e.Condition) + len(e.Text)
	b := make([]byte, 1, n)
	b[0] = evidenceV1
	for _, f := range [...]string{e.From, e.StanzaID, e.Condition, e.Text} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func decodeEvidence(b []byte) (store.Evidence, error) {
	var e store.Evidence
	if len(b) == 0 {
		return e, nil
	}
	if b[0] != evidenceV1 {
		return e, fmt.Errorf("%w: evidence format %d", errCorrupt, b[0])
	}
	b = b[1:]
	for _, f := range [...]*string{&e.From, &e.StanzaID, &e.Condition, &e.Text} {
		n, k := binary.Uvarint(b)
		// k != uvarintLen(n): a non-minimal length never comes from
		// encodeEvidence.
		if k <= 0 || k != uvarintLen(n) || n > maxField || n > uint64(len(b)-k) {
			return store.Evidence{}, fmt.Errorf("%w: evidence field length", errCorrupt)
		}
		s := b[k : k+int(n)]
		if !utf8.Valid(s) {
			return store.Evidence{}, fmt.Errorf("%w: evidence field is not UTF-8", errCorrupt)
		}
		*f = string(s)
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return store.Evidence{}, fmt.Errorf("%w: %d trailing bytes after the evidence", errCorrupt, len(b))
	}
	return e, nil
}

// decodeState checks a stored state.
func decodeState(v int64) (tracking.MessageState, error) {
	if v < 0 || v > int64(tracking.Error) {
		return 0, fmt.Errorf("%w: state %d", errCorrupt, v)
	}
	return tracking.MessageState(v), nil
}

// decodeSeq checks a stored sequence number.
func decodeSeq(v int64) (uint32, error) {
	if v < 0 || v > 1<<32-1 {
		return 0, fmt.Errorf("%w: sequence number %d", errCorrupt, v)
	}
	return uint32(v), nil
}

// uvarintLen is the length of the minimal uvarint encoding of n.
func uvarintLen(n uint64) int {
	k := 1
	for ; n >= 0x80; n >>= 7 {
		k++
	}
	return k
}
