package wire

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"mellium.im/xmpp"
)

// TestWriteRaw: a Raw element goes on the stream as it is, in order with
// the elements encoded from tokens around it, and its Token gives its
// tokens; after the output stream is closed, it is refused like any
// element.
func TestWriteRaw(t *testing.T) {
	s, peer := newSession(t)
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- string(b)
	}()
	raw := `<message xmlns="jabber:client" id="r1"><body>a &amp; b</body></message>`
	if n, err := Write(context.Background(), s, msg("m1"), &Raw{B: []byte(raw)}, msg("m2")); n != 3 || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := Write(context.Background(), s, &Raw{B: []byte(raw)}); n != 0 || !errors.Is(err, xmpp.ErrOutputStreamClosed) {
		t.Errorf("Write after the output closed: %d, %v", n, err)
	}
	s.Conn().Close() // a refused element leaves the connection open
	out := <-got
	i1, ir, i2 := strings.Index(out, `id="m1"`), strings.Index(out, raw), strings.Index(out, `id="m2"`)
	if i1 < 0 || ir < i1 || i2 < ir {
		t.Errorf("wrote %q, want m1, the raw element whole, then m2", out)
	}
	if strings.Count(out, raw) != 1 {
		t.Errorf("wrote %q, want the raw element once", out)
	}

	var names []string
	r := &Raw{B: []byte(raw)}
	for {
		tok, err := r.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok {
			names = append(names, se.Name.Local)
		}
	}
	if strings.Join(names, ",") != "message,body" {
		t.Errorf("Token gave start elements %v", names)
	}
}
