package sm

import (
	"bytes"
	"encoding/xml"

	"mellium.im/xmpp/stream"
)

// parseStreamError decodes a <stream:error/> as the inbound scanner
// buffered it (its prefix is declared on the stream header, so the element
// alone leaves it unbound; the condition and text carry their own
// namespace). An element cut at the buffer's bound, or one without a known
// condition, gives undefined-condition.
func parseStreamError(raw []byte) error {
	var se stream.Error
	if xml.NewDecoder(bytes.NewReader(raw)).Decode(&se); se.Err == "" {
		se.Err = stream.UndefinedCondition.Err
	}
	return se
}
