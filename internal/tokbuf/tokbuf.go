// Package tokbuf buffers the tokens of one XML element so that they can be
// read more than once: the client's tap and the muc package read a stanza
// themselves before they hand it, unchanged, to the next handler.
//
// A Buffer keeps start and end elements as it read them: their names and
// attribute values are strings, which never change, and encoding/xml's
// Decoder allocates a new Attr slice for every start element, so holding on
// to them costs nothing. Byte-slice tokens (character data, comments,
// processing instructions, directives) point into the decoder's own buffer,
// which the next read overwrites: a Buffer copies their bytes into storage of
// its own, which Reset reuses. Tokens read from a Buffer are therefore valid
// until its next Reset, the same promise a Decoder makes until its next
// Token call.
package tokbuf // import "github.com/xmpptrack/xmpptrack/internal/tokbuf"

import (
	"encoding/xml"
	"io"
)

// Storage a Buffer keeps for reuse after Reset; more is dropped, so that one
// large stanza does not pin its memory for good.
const (
	keepTokens = 256
	keepBytes  = 16 << 10
)

// Buffer holds tokens and replays them. The zero value is empty and ready to
// use. A Buffer is not safe for concurrent use.
type Buffer struct {
	toks []xml.Token
	data []byte // copies of byte-slice tokens
	pos  int    // next token Token returns
}

// ReadFrom appends the tokens of r until r returns io.EOF or the buffer holds
// max tokens. complete reports that r ended (io.EOF) within the bound; when it
// is false and err is nil, the rest is still unread in r. A token returned
// together with an error is kept. Errors other than io.EOF are returned as
// they are, with complete false.
func (b *Buffer) ReadFrom(r xml.TokenReader, max int) (complete bool, err error) {
	for len(b.toks) < max {
		tok, err := r.Token()
		if tok != nil {
			b.Add(tok)
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// Add appends one token, copying its bytes when it has any.
func (b *Buffer) Add(tok xml.Token) {
	switch t := tok.(type) {
	case xml.CharData:
		tok = xml.CharData(b.keep(t))
	case xml.Comment:
		tok = xml.Comment(b.keep(t))
	case xml.Directive:
		tok = xml.Directive(b.keep(t))
	case xml.ProcInst:
		tok = xml.ProcInst{Target: t.Target, Inst: b.keep(t.Inst)}
	}
	b.toks = append(b.toks, tok)
}

// keep copies p into b.data. The result's capacity is its length, so that an
// append by a reader cannot overwrite the next copy. Growing b.data leaves
// earlier copies where they are.
func (b *Buffer) keep(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	n := len(b.data)
	b.data = append(b.data, p...)
	return b.data[n:len(b.data):len(b.data)]
}

// Len returns the number of tokens held.
func (b *Buffer) Len() int { return len(b.toks) }

// Tokens returns the tokens held. The slice is valid until the next Add,
// ReadFrom or Reset.
func (b *Buffer) Tokens() []xml.Token { return b.toks }

// Token returns the next token held, and io.EOF after the last one. It makes
// a Buffer an xml.TokenReader.
func (b *Buffer) Token() (xml.Token, error) {
	if b.pos >= len(b.toks) {
		return nil, io.EOF
	}
	b.pos++
	return b.toks[b.pos-1], nil
}

// Rewind makes Token start again from the first token.
func (b *Buffer) Rewind() { b.pos = 0 }

// Reset empties the buffer for reuse. Tokens read from it before are no longer
// valid.
func (b *Buffer) Reset() {
	clear(b.toks) // drop references to the tokens
	b.toks = b.toks[:0]
	if cap(b.toks) > keepTokens {
		b.toks = nil
	}
	b.data = b.data[:0]
	if cap(b.data) > keepBytes {
		b.data = nil
	}
	b.pos = 0
}
