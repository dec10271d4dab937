package tokbuf

import (
	"encoding/xml"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

const sample = `<message from='bob@localhost/x' id='m1'><!--c--><?pi data?><body>hello <b>bold</b> bob</body><received xmlns='urn:xmpp:receipts' id='m0'/></message>`

// decoded returns the tokens of s, copied, and a decoder positioned after
// the first start element.
func decoded(t testing.TB, s string) ([]xml.Token, *xml.Decoder) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var want []xml.Token
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, xml.CopyToken(tok))
	}
	d = xml.NewDecoder(strings.NewReader(s))
	if _, err := d.Token(); err != nil {
		t.Fatal(err)
	}
	return want[1:], d
}

func readAll(t testing.TB, r xml.TokenReader) []xml.Token {
	t.Helper()
	var got []xml.Token
	for {
		tok, err := r.Token()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tok)
	}
}

func TestReplay(t *testing.T) {
	want, d := decoded(t, sample)
	var b Buffer
	complete, err := b.ReadFrom(d, 100)
	if err != nil || !complete {
		t.Fatalf("ReadFrom: %v, %v", complete, err)
	}
	// The decoder has moved on and reused its buffer: the copies must not
	// have changed.
	for range 2 {
		if got := readAll(t, &b); !reflect.DeepEqual(got, want) {
			t.Fatalf("replay:\n got %#v\nwant %#v", got, want)
		}
		b.Rewind()
	}
	if b.Len() != len(want) || !reflect.DeepEqual(b.Tokens(), want) {
		t.Fatalf("Len %d, Tokens %#v", b.Len(), b.Tokens())
	}
}

// Appending to a replayed byte slice must not overwrite the next token.
func TestCopiesAreCapped(t *testing.T) {
	var b Buffer
	b.Add(xml.CharData("ab"))
	b.Add(xml.CharData("cd"))
	first := b.Tokens()[0].(xml.CharData)
	_ = append(first, 'X')
	if got := string(b.Tokens()[1].(xml.CharData)); got != "cd" {
		t.Fatalf("second token %q after an append to the first", got)
	}
}

func TestReset(t *testing.T) {
	var b Buffer
	b.Add(xml.CharData("x"))
	b.Token()
	b.Reset()
	if b.Len() != 0 {
		t.Fatalf("Len %d after Reset", b.Len())
	}
	if tok, err := b.Token(); tok != nil || err != io.EOF {
		t.Fatalf("Token after Reset: %v, %v", tok, err)
	}
	// Small storage is kept for reuse, large storage is dropped.
	b.Add(xml.CharData("y"))
	b.Reset()
	if cap(b.toks) == 0 || cap(b.data) == 0 {
		t.Fatal("small storage not kept")
	}
	for range keepTokens + 1 {
		b.Add(xml.CharData(strings.Repeat("z", keepBytes/keepTokens+1)))
	}
	b.Reset()
	if b.toks != nil || b.data != nil {
		t.Fatalf("large storage kept: %d tokens, %d bytes", cap(b.toks), cap(b.data))
	}
}

func TestReadFromBound(t *testing.T) {
	_, d := decoded(t, sample)
	var b Buffer
	complete, err := b.ReadFrom(d, 3)
	if err != nil || complete || b.Len() != 3 {
		t.Fatalf("ReadFrom with a bound of 3: %v, %v, %d tokens", complete, err, b.Len())
	}
	// The rest is still in the decoder.
	if tok, err := d.Token(); err != nil || tok == nil {
		t.Fatalf("rest: %v, %v", tok, err)
	}
}

type failing struct {
	tok xml.Token
	err error
}

func (f *failing) Token() (xml.Token, error) {
	tok := f.tok
	f.tok = nil
	return tok, f.err
}

func TestReadFromErrors(t *testing.T) {
	boom := errors.New("boom")
	var b Buffer
	complete, err := b.ReadFrom(&failing{tok: xml.CharData("last"), err: boom}, 10)
	if err != boom || complete || b.Len() != 1 {
		t.Fatalf("error with a token: %v, %v, %d tokens", complete, err, b.Len())
	}
	b.Reset()
	complete, err = b.ReadFrom(&failing{tok: xml.CharData("last"), err: io.EOF}, 10)
	if err != nil || !complete || b.Len() != 1 {
		t.Fatalf("io.EOF with a token: %v, %v, %d tokens", complete, err, b.Len())
	}
}

// BenchmarkBuffer reads a message into a reused Buffer and replays it, the
// tap's work for a message an application handler reads after it;
// CopyToken is the way it was done before, for comparison.
func BenchmarkBuffer(b *testing.B) {
	want, _ := decoded(b, sample)
	src := &replay{toks: want}
	b.Run("tokbuf", func(b *testing.B) {
		var buf Buffer
		b.ReportAllocs()
		for b.Loop() {
			src.pos = 0
			buf.ReadFrom(src, 4096)
			for {
				if _, err := buf.Token(); err != nil {
					break
				}
			}
			buf.Reset()
		}
	})
	b.Run("copytoken", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			src.pos = 0
			var toks []xml.Token
			for {
				tok, err := src.Token()
				if err != nil {
					break
				}
				toks = append(toks, xml.CopyToken(tok))
			}
			for range toks {
			}
		}
	})
}

type replay struct {
	toks []xml.Token
	pos  int
}

func (r *replay) Token() (xml.Token, error) {
	if r.pos >= len(r.toks) {
		return nil, io.EOF
	}
	r.pos++
	return r.toks[r.pos-1], nil
}
