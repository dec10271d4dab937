package sm

import (
	"bytes"
	"encoding/xml"
	"io"
	"log/slog"
)

// dropDamaged reports e lost instead of writing it again when its Raw is
// not one whole XML element (a store that damaged it): a write of it would
// fail half way and cut the connection, and the next connection would
// write it again. It takes e off the head of *list and reports it, unless
// Abandon or another connection took it meanwhile (which reported or moved
// it); either way the caller looks at the list again. Only stanzas about to be written
// again are checked, so that Restore stays cheap and the server's h still
// settles a damaged stanza it counted.
func (st *State) dropDamaged(list *[]entry, e entry) bool {
	if e.raw == nil || oneElement(e.raw) {
		return false
	}
	st.mu.Lock()
	if len(*list) == 0 || (*list)[0].ord != e.ord {
		st.mu.Unlock()
		return true
	}
	(*list)[0] = entry{}
	*list = (*list)[1:]
	st.pushLocked(evLost, e)
	st.spaceLocked()
	st.mu.Unlock()
	st.deliver()
	st.logAt(slog.LevelWarn, "sm: a stored stanza is damaged and cannot be written again: reported lost", "id", e.id)
	return true
}

// oneElement reports whether raw is one whole XML element with nothing but
// white space around it.
func oneElement(raw []byte) bool {
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth, seen := 0, false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return seen && depth == 0
		}
		if err != nil {
			return false
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth == 0 && seen {
				return false
			}
			depth++
			seen = true
		case xml.EndElement:
			if depth == 0 {
				return false
			}
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(tok)) > 0 {
				return false
			}
		case xml.ProcInst, xml.Directive, xml.Comment:
			if depth == 0 {
				return false
			}
		}
	}
}
