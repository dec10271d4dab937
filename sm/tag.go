package sm

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/xmpptrack/xmpptrack/internal/xmltext"
)

const (
	nsStream = "http://etherx.jabber.org/streams"
	nsClient = "jabber:client"
	nsServer = "jabber:server"
)

// classify parses the top-level start tag in s.buf, records the offsets of
// its id and to attribute values and returns its kind. For a stream header
// it also records the header's namespace declarations, which later
// unprefixed or prefixed top-level elements inherit.
func (s *scanner) classify() kind {
	tag := s.buf
	s.idOff, s.toOff = [2]int{-1, -1}, [2]int{-1, -1}
	i := 1
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	prefix, local := splitName(tag[1:i])
	attrStart := i

	var nsVal []byte
	nsFound := false
	for {
		name, vs, ve, next, ok := nextAttr(tag, i)
		if !ok {
			break
		}
		i = next
		switch {
		case string(name) == "id":
			s.idOff = [2]int{vs, ve}
		case string(name) == "to":
			s.toOff = [2]int{vs, ve}
		case len(prefix) == 0 && string(name) == "xmlns":
			nsVal, nsFound = tag[vs:ve], true
		case len(prefix) > 0 && len(name) == len("xmlns:")+len(prefix) &&
			string(name[:len("xmlns:")]) == "xmlns:" && bytes.Equal(name[len("xmlns:"):], prefix):
			nsVal, nsFound = tag[vs:ve], true
		}
	}

	var ns uint8
	switch {
	case nsFound:
		s.scratch = unescape(s.scratch[:0], nsVal)
		ns = nsOfBytes(s.scratch)
	default:
		ns = s.inherited(prefix)
	}

	switch ns {
	case nsIDContent:
		switch string(local) {
		case "message":
			return kindMessage
		case "presence":
			return kindPresence
		case "iq":
			return kindIQ
		}
	case nsIDSM:
		switch string(local) {
		case "r":
			return kindR
		case "a":
			return kindA
		case "enable":
			return kindEnable
		case "enabled":
			return kindEnabled
		case "resume":
			return kindResume
		case "resumed":
			return kindResumed
		case "failed":
			return kindFailed
		}
	case nsIDStream:
		switch string(local) {
		case "stream":
			s.streamHeader(tag, attrStart)
			return kindStreamStart
		case "error":
			return kindStreamError
		}
	}
	return kindOther
}

// Namespaces the scanner tells apart.
const (
	nsIDOther   uint8 = iota
	nsIDContent       // jabber:client or jabber:server
	nsIDSM
	nsIDStream
)

func nsOf(ns string) uint8 {
	switch ns {
	case nsClient, nsServer:
		return nsIDContent
	case NS:
		return nsIDSM
	case nsStream:
		return nsIDStream
	}
	return nsIDOther
}

func nsOfBytes(ns []byte) uint8 {
	switch string(ns) {
	case nsClient, nsServer:
		return nsIDContent
	case NS:
		return nsIDSM
	case nsStream:
		return nsIDStream
	}
	return nsIDOther
}

// maxScopes caps the stream headers whose namespace declarations are kept
// (each restart nests a new header inside the unclosed old one).
const maxScopes = 8

// scope holds the namespace declarations of one stream header.
type scope struct {
	hasDef bool
	def    string
	pfx    []nsDecl
}

// streamHeader pushes the namespace declarations of a stream header.
func (s *scanner) streamHeader(tag []byte, i int) {
	if len(s.scopes) == maxScopes {
		copy(s.scopes, s.scopes[1:])
		s.scopes = s.scopes[:maxScopes-1]
	}
	var sc scope
	for {
		name, vs, ve, next, ok := nextAttr(tag, i)
		if !ok {
			break
		}
		i = next
		switch {
		case string(name) == "xmlns":
			sc.hasDef, sc.def = true, string(unescape(nil, tag[vs:ve]))
		case len(name) > len("xmlns:") && string(name[:len("xmlns:")]) == "xmlns:":
			sc.pfx = append(sc.pfx, nsDecl{
				prefix: string(name[len("xmlns:"):]),
				ns:     string(unescape(nil, tag[vs:ve])),
			})
		}
	}
	s.scopes = append(s.scopes, sc)
}

// streamEnd pops the declarations of the innermost stream header.
func (s *scanner) streamEnd() {
	if len(s.scopes) > 0 {
		s.scopes = s.scopes[:len(s.scopes)-1]
	}
}

// inherited resolves a prefix ("" for the default namespace) through the
// enclosing stream headers.
func (s *scanner) inherited(prefix []byte) uint8 {
	for i := len(s.scopes) - 1; i >= 0; i-- {
		sc := &s.scopes[i]
		if len(prefix) == 0 {
			if sc.hasDef {
				return nsOf(sc.def)
			}
			continue
		}
		for _, d := range sc.pfx {
			if d.prefix == string(prefix) {
				return nsOf(d.ns)
			}
		}
	}
	return nsIDOther
}

// splitName splits a qualified name at its first colon.
func splitName(name []byte) (prefix, local []byte) {
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return nil, name
}

// nextAttr parses the attribute that starts at or after tag[i] (after
// optional white space). It returns the attribute name, the offsets of its
// value (without quotes) and the index after the closing quote. ok is false
// at the end of the tag or on malformed input.
func nextAttr(tag []byte, i int) (name []byte, vs, ve, next int, ok bool) {
	n := len(tag)
	for i < n && isSpace(tag[i]) {
		i++
	}
	if i >= n || tag[i] == '/' || tag[i] == '>' {
		return nil, 0, 0, 0, false
	}
	start := i
	for i < n && !isSpace(tag[i]) && tag[i] != '=' && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	name = tag[start:i]
	for i < n && isSpace(tag[i]) {
		i++
	}
	if i >= n || tag[i] != '=' {
		return nil, 0, 0, 0, false
	}
	i++
	for i < n && isSpace(tag[i]) {
		i++
	}
	if i >= n || (tag[i] != '"' && tag[i] != '\'') {
		return nil, 0, 0, 0, false
	}
	q := tag[i]
	i++
	j := bytes.IndexByte(tag[i:], q)
	if j < 0 {
		return nil, 0, 0, 0, false
	}
	return name, i, i + j, i + j + 1, true
}

// unescape decodes an attribute value the way encoding/xml does: the five
// predefined entities, decimal and hexadecimal character references, and
// line-end normalisation (CR LF and lone CR become LF). Unknown or invalid
// references are kept literally (encoding/xml would reject the stream).
// It returns v itself when there is nothing to decode; otherwise it appends
// to dst.
func unescape(dst, v []byte) []byte {
	if bytes.IndexByte(v, '&') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return v
	}
	for i := 0; i < len(v); {
		c := v[i]
		switch c {
		case '\r':
			dst = append(dst, '\n')
			i++
			if i < len(v) && v[i] == '\n' {
				i++
			}
			continue
		case '&':
			j := bytes.IndexByte(v[i:], ';')
			if j > 0 {
				if r, ok := entity(v[i+1 : i+j]); ok {
					dst = utf8.AppendRune(dst, r)
					i += j + 1
					continue
				}
			}
		}
		dst = append(dst, c)
		i++
	}
	return dst
}

func entity(e []byte) (rune, bool) {
	switch string(e) {
	case "lt":
		return '<', true
	case "gt":
		return '>', true
	case "amp":
		return '&', true
	case "apos":
		return '\'', true
	case "quot":
		return '"', true
	}
	if len(e) < 2 || e[0] != '#' {
		return 0, false
	}
	var n uint64
	var err error
	if e[1] == 'x' {
		n, err = strconv.ParseUint(string(e[2:]), 16, 32)
	} else {
		n, err = strconv.ParseUint(string(e[1:]), 10, 32)
	}
	if err != nil || !xmltext.Char(rune(n)) {
		return 0, false
	}
	return rune(n), true
}
