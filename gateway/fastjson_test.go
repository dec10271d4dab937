package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
)

// decodeStd decodes a POST /v1/messages body as decodeBody does without
// the fast path.
func decodeStd(data []byte) (sendRequest, bool) {
	var req sendRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, false
	}
	return req, true
}

var fastSeeds = []struct {
	in   string
	fast bool // the fast path takes it
}{
	{`{"to":"bob@example.org","body":"benchmark message"}`, true},
	{` { "to" : "bob@example.org" ,	"body":"hi" , "type":"chat","from":"alice@example.org","thread":"t1","channel":"ops","wait":"server"}` + "\r\n", true},
	{`{}`, true},
	{` {	} `, true},
	{`{"to":"a@b","to":"c@d","body":"x"}`, true},
	{`{"to":"bob@example.org","body":"héllo wörld ✓"}`, true},
	{`{"to":"bob@example.org","body":""}`, true},
	{`{"to":"bob@example.org","body":"a\"b"}`, false},
	{`{"to":"bob@example.org","body":"a\u0001b"}`, false},
	{"{\"to\":\"bob@example.org\",\"body\":\"a\xffb\"}", false},
	{`{"To":"bob@example.org","body":"x"}`, false},
	{`{"to":"bob@example.org","body":null}`, false},
	{`{"to":"bob@example.org","body":"x","window":"30s"}`, false},
	{`{"to":"bob@example.org","body":"x","bcc":"eve@example.org"}`, false},
	{`{"to":42,"body":"hi"}`, false},
	{`{"to":"bob@example.org","body":"x",}`, false},
	{`{"to":"bob@example.org","body":"x"}{}`, false},
	{`{"to":"bob@example.org","body":"x"`, false},
	{`{"to":"bob@example.org" "body":"x"}`, false},
	{`{"to"`, false},
	{`[1,2]`, false},
	{``, false},
	{`{,}`, false},
	{`{"to":"x",`, false},
	{"\ufeff{}", false},
}

// TestDecodeFast: the fast path takes the common bodies, declines the
// others, and decodes what it takes exactly as encoding/json does.
func TestDecodeFast(t *testing.T) {
	for _, c := range fastSeeds {
		var got sendRequest
		ok := got.decodeFast([]byte(c.in))
		if ok != c.fast {
			t.Errorf("%q: fast path took it: %v, want %v", c.in, ok, c.fast)
		}
		if !ok {
			continue
		}
		want, wok := decodeStd([]byte(c.in))
		if !wok || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: fast %+v, encoding/json %+v (ok %v)", c.in, got, want, wok)
		}
	}
}

// FuzzDecodeFast: whatever the fast path takes, encoding/json takes too and
// decodes to the same request.
func FuzzDecodeFast(f *testing.F) {
	for _, c := range fastSeeds {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got sendRequest
		if !got.decodeFast(data) {
			return
		}
		want, ok := decodeStd(data)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast %+v, encoding/json %+v (ok %v)", data, got, want, ok)
		}
	})
}
