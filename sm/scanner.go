package sm

import "bytes"

// kind classifies a top-level element of the stream.
type kind uint8

const (
	kindOther kind = iota
	kindMessage
	kindPresence
	kindIQ
	kindR
	kindA
	kindEnable
	kindEnabled
	kindResume
	kindResumed
	kindFailed
	kindStreamStart // a <stream:stream> start tag (initial stream or restart)
	kindStreamEnd   // an end tag at stream level (</stream:stream>)
	kindStreamError // a <stream:error/>, buffered whole (up to maxTagLen)
)

// isStanza reports whether k counts toward h.
func (k kind) isStanza() bool { return k >= kindMessage && k <= kindIQ }

// stanzaName returns the local name of a stanza kind.
func (k kind) stanzaName() string {
	switch k {
	case kindMessage:
		return "message"
	case kindPresence:
		return "presence"
	case kindIQ:
		return "iq"
	}
	return ""
}

// element is one complete top-level element reported by the scanner.
// Its slices point into the scanner's buffer and are valid only during the
// sink call.
type element struct {
	kind kind
	// raw holds the whole element when the scanner captures (outbound
	// stanzas), otherwise only its start tag (possibly truncated to
	// maxTagLen).
	raw []byte
	// id and to are the raw, still escaped attribute values of the start
	// tag; nil when absent.
	id, to []byte
}

// sink receives the elements found by a scanner.
type sink interface {
	element(e *element)
	// limit is called once, when the input exceeded a limit.
	limit(err *LimitError)
}

// limits caps what one construct of the stream may take, in bytes; 0 is
// no cap. Only the inbound scanner has limits.
type limits struct {
	stanza    int64 // a top-level element (or comment, PI, declaration)
	ws        int64 // a run of text at stream level (whitespace keepalives)
	streamErr int64 // a <stream:error/>
}

// Lexer states.
const (
	stText        uint8 = iota // character data
	stLT                       // after '<'
	stStart                    // in a start tag, outside quotes
	stStartQ                   // in a quoted attribute value
	stEnd                      // in an end tag
	stPI                       // in a processing instruction
	stBang                     // after "<!"
	stCommentO                 // after "<!-"
	stComment                  // in a comment
	stCDATAO                   // in "<![CDATA[" before the second '['
	stCDATA                    // in a CDATA section
	stDecl                     // in another declaration (<!DOCTYPE ...>)
	stDeclComment              // in a comment inside a declaration
)

// maxTagLen caps how much of a top-level start tag is kept when the scanner
// does not capture whole elements (inbound). The name and the attributes
// the package needs come first in practice; the rest is still scanned.
const maxTagLen = 16 << 10

// keepBufCap is the buffer capacity kept between elements; a larger buffer
// (after a huge stanza) is released.
const keepBufCap = 64 << 10

// scanner is an incremental, allocation-free tokenizer over the bytes of an
// XMPP stream. It tracks element depth (with quotes, comments, CDATA,
// processing instructions and declarations handled so that '<', '>' and '/'
// inside them are ignored), treats every <stream:stream> start tag as a
// (re)start of the stream, and reports each complete top-level element to
// its sink.
//
// It does not validate: on malformed input it keeps going and may report
// garbage, but it never panics and never grows without bound (except
// while capturing one top-level stanza, which is the caller's own data).
type scanner struct {
	sink    sink
	capture bool // keep whole top-level stanzas (outbound)

	state     uint8
	quote     byte // closing quote in stStartQ, or in stDecl (0 = none)
	last      byte // last byte of the current tag seen so far
	n         int  // dashes, brackets or nesting counted by the current state
	m         int  // declarations: progress through "<!--", or dashes
	depth     int  // open elements below the stream root
	buffering bool // bytes are being appended to buf
	trunc     bool // buf reached maxTagLen; stop appending
	buf       []byte

	cur     element // top-level element in progress
	idOff   [2]int  // id value offsets in buf, {-1,-1} if absent
	toOff   [2]int  // to value offsets in buf
	scopes  []scope // namespace declarations of the open stream headers
	scratch []byte  // entity-decoding scratch space

	lim     limits
	err     *LimitError // a limit was exceeded: every later Write fails
	inTop   bool        // inside a top-level construct
	topFrom int         // where it began in the current p (0: earlier)
	topLen  int64       // its bytes in earlier calls of Write
	wsLen   int64       // bytes of the current text run at stream level
}

type nsDecl struct{ prefix, ns string }

func newScanner(s sink, capture bool) *scanner {
	return &scanner{sink: s, capture: capture}
}

// Write scans p. Without limits it never fails. With limits, once a
// construct exceeds one, it reports the LimitError to the sink and fails
// with it, now and on every later call, consuming nothing: as the inbound
// tee (an io.TeeReader in mellium), that makes the read that brought the
// bytes fail, so the XML decoder neither gets them nor reads any more.
func (s *scanner) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	mark := 0 // start of the bytes of p that are not yet in buf
	i := 0
	for i < len(p) {
		if s.err != nil {
			return 0, s.err
		}
		switch s.state {
		case stText:
			j := bytes.IndexByte(p[i:], '<')
			if s.depth == 0 && s.lim.ws > 0 {
				run := j
				if j < 0 {
					run = len(p) - i
				}
				if s.wsLen += int64(run); s.wsLen > s.lim.ws {
					s.exceeded("whitespace", s.lim.ws)
					return 0, s.err
				}
			}
			if j < 0 {
				i = len(p)
				continue
			}
			i += j
			if s.depth == 0 {
				s.startBuffer()
				mark = i
				s.wsLen = 0
				s.inTop, s.topFrom, s.topLen = true, i, 0
			}
			s.state = stLT
			i++
		case stLT:
			switch c := p[i]; c {
			case '/':
				s.state = stEnd
			case '?':
				s.state, s.n = stPI, 0
			case '!':
				s.state = stBang
			default:
				s.state, s.last = stStart, c
			}
			i++
		case stStart:
			j := indexTagSpecial(p[i:])
			if j < 0 {
				s.last = p[len(p)-1]
				i = len(p)
				continue
			}
			prev := s.last
			if j > 0 {
				prev = p[i+j-1]
			}
			c := p[i+j]
			i += j + 1
			if c == '>' {
				s.state = stText
				// XML allows no space in "/>".
				mark = s.endStartTag(p, mark, i, prev == '/')
				continue
			}
			s.state, s.quote = stStartQ, c
		case stStartQ:
			j := bytes.IndexByte(p[i:], s.quote)
			if j < 0 {
				i = len(p)
				continue
			}
			i += j + 1
			s.state, s.last = stStart, s.quote
		case stEnd:
			j := bytes.IndexByte(p[i:], '>')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j + 1
			s.state = stText
			mark = s.endEndTag(p, mark, i)
		case stPI:
			for i < len(p) {
				c := p[i]
				i++
				if c == '>' && s.n == 1 {
					s.state = stText
					s.endMisc(i)
					break
				}
				if c == '?' {
					s.n = 1
				} else {
					s.n = 0
				}
			}
		case stBang:
			switch p[i] {
			case '-':
				s.state = stCommentO
			case '[':
				s.state = stCDATAO
			default:
				// A declaration such as <!DOCTYPE. Like encoding/xml, the
				// first byte is taken as is.
				s.state, s.quote, s.n, s.m = stDecl, 0, 0, 0
			}
			i++
		case stCommentO:
			// "<!-" must be followed by '-'; anything else is malformed and is
			// treated as a declaration.
			if p[i] == '-' {
				s.state, s.n = stComment, 0
				i++
			} else {
				s.state, s.quote, s.n, s.m = stDecl, 0, 0, 0
			}
		case stComment:
			for i < len(p) {
				c := p[i]
				i++
				if c == '-' {
					s.n++
					continue
				}
				if c == '>' && s.n >= 2 {
					s.state = stText
					s.endMisc(i)
					break
				}
				s.n = 0
			}
		case stCDATAO:
			// Skip "CDATA[" up to the second '['. A '>' first means the
			// input is not CDATA; treat it as the end of a declaration.
			for i < len(p) {
				c := p[i]
				i++
				if c == '[' {
					s.state, s.n = stCDATA, 0
					break
				}
				if c == '>' {
					s.state = stText
					s.endMisc(i)
					break
				}
			}
		case stCDATA:
			for i < len(p) {
				c := p[i]
				i++
				if c == ']' {
					s.n++
					continue
				}
				if c == '>' && s.n >= 2 {
					s.state = stText
					s.endMisc(i)
					break
				}
				s.n = 0
			}
		case stDecl:
			i = s.scanDecl(p, i)
		case stDeclComment:
			for i < len(p) {
				c := p[i]
				i++
				if c == '-' {
					s.m++
					continue
				}
				if c == '>' && s.m >= 2 {
					s.state, s.m = stDecl, 0
					break
				}
				s.m = 0
			}
		}
	}
	if s.inTop {
		s.topLen += int64(len(p) - s.topFrom)
		s.topFrom = 0
		s.checkTop()
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.buffering {
		s.appendBuf(p[mark:])
	}
	return len(p), nil
}

// endTop ends the top-level construct at p[i-1].
func (s *scanner) endTop(i int) {
	if !s.inTop {
		return
	}
	s.topLen += int64(i - s.topFrom)
	s.checkTop()
	s.inTop, s.topFrom, s.topLen = false, 0, 0
}

// checkTop checks the size of the top-level construct so far.
func (s *scanner) checkTop() {
	what, max := "stanza", s.lim.stanza
	if s.cur.kind == kindStreamError {
		what, max = "stream error", s.lim.streamErr
	}
	if max > 0 && s.topLen > max && s.err == nil {
		s.exceeded(what, max)
	}
}

// exceeded records a limit breach and reports it.
func (s *scanner) exceeded(what string, max int64) {
	s.err = &LimitError{What: what, Limit: max}
	s.sink.limit(s.err)
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

// startBuffer starts collecting a top-level construct at its '<'.
func (s *scanner) startBuffer() {
	if cap(s.buf) > keepBufCap {
		s.buf = nil
	}
	s.buf = s.buf[:0]
	s.buffering, s.trunc = true, false
}

func (s *scanner) appendBuf(b []byte) {
	if s.trunc {
		return
	}
	if !s.capture {
		// Only start tags are buffered: cap them.
		if room := maxTagLen - len(s.buf); len(b) > room {
			b = b[:max(room, 0)]
			s.trunc = true
		}
	}
	s.buf = append(s.buf, b...)
}

// endMisc ends a comment, PI, CDATA section or declaration. At top level
// its bytes are dropped; inside a captured element they stay.
func (s *scanner) endMisc(i int) {
	if s.depth == 0 {
		s.buffering = false
		s.endTop(i)
	}
}

// endStartTag handles the '>' of a start tag at p[i-1] and returns the new
// mark.
func (s *scanner) endStartTag(p []byte, mark, i int, self bool) int {
	if s.depth > 0 {
		if !self {
			s.depth++
		}
		return mark
	}
	// A top-level start tag, all of it in buf from here on.
	s.cur = element{}
	s.appendBuf(p[mark:i])
	mark = i
	k := s.classify()
	if k == kindStreamStart {
		s.endTop(i)
		s.depth = 0
		s.buffering = false
		s.emit(kindStreamStart)
		if self { // <stream:stream/>: opened and closed at once
			s.streamEnd()
			s.emit(kindStreamEnd)
		}
		return mark
	}
	s.cur.kind = k
	if self {
		s.endTop(i)
		s.emit(k)
		s.buffering = false
		return mark
	}
	s.depth = 1
	if k != kindStreamError && (!s.capture || !k.isStanza()) {
		s.buffering = false
	}
	return mark
}

// endEndTag handles the '>' of an end tag at p[i-1] and returns the new
// mark.
func (s *scanner) endEndTag(p []byte, mark, i int) int {
	if s.depth == 0 {
		// An end tag at stream level closes the stream.
		s.endTop(i)
		s.buffering = false
		s.cur = element{}
		s.idOff, s.toOff = [2]int{-1, -1}, [2]int{-1, -1}
		s.streamEnd()
		s.emit(kindStreamEnd)
		return mark
	}
	s.depth--
	if s.depth > 0 {
		return mark
	}
	if s.buffering {
		s.appendBuf(p[mark:i])
		mark = i
		s.buffering = false
	}
	s.endTop(i)
	s.emit(s.cur.kind)
	return mark
}

func (s *scanner) emit(k kind) {
	e := &s.cur
	if s.err != nil { // over a limit: the decoder never gets it
		*e = element{}
		return
	}
	e.kind = k
	e.raw = s.buf
	e.id = s.slice(s.idOff)
	e.to = s.slice(s.toOff)
	s.sink.element(e)
	*e = element{}
}

func (s *scanner) slice(off [2]int) []byte {
	if off[0] < 0 || off[1] > len(s.buf) {
		return nil
	}
	return s.buf[off[0]:off[1]]
}

// scanDecl scans a declaration such as <!DOCTYPE ...> from p[i] and
// returns the index after the consumed bytes. It follows encoding/xml:
// quoted text is opaque, '<' and '>' nest, and "<!--" starts a comment.
// XMPP forbids these; the only goal is to stay in step with the parser.
func (s *scanner) scanDecl(p []byte, i int) int {
	for i < len(p) {
		c := p[i]
		if s.m > 0 { // after '<': matching "!--"
			if c == "!--"[s.m-1] {
				i++
				if s.m++; s.m == 4 {
					s.state, s.m = stDeclComment, 0
					return i
				}
				continue
			}
			s.m = 0
			s.n++ // a nested '<'; look at c again
			continue
		}
		i++
		switch {
		case s.quote != 0:
			if c == s.quote {
				s.quote = 0
			}
		case c == '>' && s.n == 0:
			s.state = stText
			s.endMisc(i)
			return i
		case c == '\'' || c == '"':
			s.quote = c
		case c == '>':
			s.n--
		case c == '<':
			s.m = 1
		}
	}
	return i
}

// tagSpecial marks the bytes that matter inside a start tag.
var tagSpecial = [256]bool{'\'': true, '"': true, '>': true}

// indexTagSpecial returns the index of the first quote or '>' in b, or -1.
func indexTagSpecial(b []byte) int {
	for i, c := range b {
		if tagSpecial[c] {
			return i
		}
	}
	return -1
}
