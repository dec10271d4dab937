package stanza_test

import (
	"bytes"
	"encoding/xml"
	"reflect"
	"strings"
	"testing"

	"mellium.im/xmlstream"
)

// decodable is a pointer to a decodable element type.
type decodable[T any] interface {
	*T
	xml.Unmarshaler
}

// element is what every element type of the package implements.
type element interface {
	xml.Marshaler
	xmlstream.Marshaler
	xmlstream.WriterTo
}

func decode[T any, PT decodable[T]](s string) (T, error) {
	var v T
	err := xml.NewDecoder(strings.NewReader(s)).Decode(PT(&v))
	return v, err
}

// encodeAll encodes v through MarshalXML, WriteXML and TokenReader and
// fails unless all three give the same bytes.
func encodeAll(t testing.TB, v element) string {
	t.Helper()
	viaMarshal, err := xml.Marshal(v)
	if err != nil {
		t.Fatalf("xml.Marshal(%#v): %v", v, err)
	}
	var b bytes.Buffer
	e := xml.NewEncoder(&b)
	if _, err := v.WriteXML(e); err != nil {
		t.Fatalf("WriteXML(%#v): %v", v, err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	viaWrite := b.String()
	b.Reset()
	e = xml.NewEncoder(&b)
	if _, err := xmlstream.Copy(e, v.TokenReader()); err != nil {
		t.Fatalf("TokenReader(%#v): %v", v, err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	if string(viaMarshal) != viaWrite || viaWrite != b.String() {
		t.Fatalf("encodings differ:\nMarshalXML  %s\nWriteXML    %s\nTokenReader %s", viaMarshal, viaWrite, b.String())
	}
	return viaWrite
}

// roundTrip decodes in, compares it with want, encodes it, compares the
// encoding with wantXML (unless empty) and decodes the encoding again.
func roundTrip[T any, PT decodable[T]](t *testing.T, in string, want T, wantXML string) {
	t.Helper()
	got, err := decode[T, PT](in)
	if err != nil {
		t.Fatalf("decode %s: %v", in, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decode %s:\n got %#v\nwant %#v", in, got, want)
	}
	out := encodeAll(t, any(got).(element))
	if wantXML != "" && out != wantXML {
		t.Fatalf("encode %#v:\n got %s\nwant %s", got, out, wantXML)
	}
	again, err := decode[T, PT](out)
	if err != nil {
		t.Fatalf("re-decode %s: %v", out, err)
	}
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("re-decode %s:\n got %#v\nwant %#v", out, again, want)
	}
}

// fuzzDecode is the body of the element fuzz targets: decoding must not
// panic, and whatever decodes must re-encode and re-decode to the same
// value.
func fuzzDecode[T any, PT decodable[T]](t *testing.T, in string) {
	v, err := decode[T, PT](in)
	if err != nil {
		return
	}
	out := encodeAll(t, any(v).(element))
	again, err := decode[T, PT](out)
	if err != nil {
		t.Fatalf("re-decode of %q (from %q): %v", out, in, err)
	}
	if !reflect.DeepEqual(v, again) {
		t.Fatalf("round trip of %q via %q:\n got %#v\nwant %#v", in, out, again, v)
	}
}

func xmlDecoder(s string) *xml.Decoder { return xml.NewDecoder(strings.NewReader(s)) }
