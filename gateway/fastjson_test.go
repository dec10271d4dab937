package gateway

import (
	"reflect"
	"testing"
)

// checkFast fails t if decodeFast accepts data and decodeJSON (the slow
// path of decodeSend) does not, or decodes it otherwise, or if decodeFast
// leaves a value behind when it refuses.
func checkFast(t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	var fast sendRequest
	if !fast.decodeFast(data) {
		if !reflect.DeepEqual(fast, sendRequest{}) {
			t.Errorf("%q: refused, but left %+v", data, fast)
		}
		return false
	}
	var want sendRequest
	if p := decodeJSON(data, &want); p != nil {
		t.Errorf("%q: accepted, but decodeJSON says %s: %s", data, p.Type, p.Detail)
		return true
	}
	if !reflect.DeepEqual(fast, want) {
		t.Errorf("%q: decoded as %+v, encoding/json gives %+v", data, fast, want)
	}
	return true
}

var fastSeeds = []struct {
	body string
	fast bool // decoded by decodeFast
}{
	{`{"to":"bob@example.org","body":"hi"}`, true},
	{`{"to":"bob@example.org","body":"benchmark message"}`, true},
	{` { "to" : "bob@example.org" ,` + "\n\t\r" + `"body" : "hi" } ` + "\n", true},
	{`{"to":"room@muc.example.org","body":"deploy done","type":"groupchat","from":"alice@example.org","thread":"t1","channel":"ci","wait":"server"}`, true},
	{`{"body":"héllo wörld ✓ 😀","to":"bob@example.org"}`, true},
	{`{"to":"bob@example.org","body":""}`, true},
	{`{}`, true},
	{`{"to":"bob@example.org"}`, true},
	{`{"to":"bob@example.org","body":"a/b<c>&d'e` + "\x7f" + `"}`, true},
	// Left to encoding/json:
	{`{"to":"bob@example.org","body":"a\"b"}`, false},
	{`{"to":"bob@example.org","body":"a\u0041"}`, false},
	{`{"to":"bob@example.org","body":"a\nb"}`, false},
	{"{\"to\":\"bob@example.org\",\"body\":\"a\nb\"}", false},
	{"{\"to\":\"bob@example.org\",\"body\":\"a\xffb\"}", false},
	{"{\"to\":\"bob@example.org\",\"body\":\"\xed\xa0\x80\"}", false},
	{`{"To":"bob@example.org","body":"hi"}`, false},
	{`{"t\u006f":"bob@example.org","body":"hi"}`, false},
	{`{"to":"bob@example.org","body":"hi","to":"carol@example.org"}`, false},
	{`{"to":"bob@example.org","body":null}`, false},
	{`{"to":"bob@example.org","body":1}`, false},
	{`{"to":"bob@example.org","body":["hi"]}`, false},
	{`{"to":"bob@example.org","body":{"x":"y"}}`, false},
	{`{"to":"bob@example.org","body":"hi","window":"30s"}`, false},
	{`{"to":"bob@example.org","body":"hi","send_at":"2030-01-02T15:04:05Z"}`, false},
	{`{"to":"bob@example.org","body":"hi","wait":"server","wait_timeout":"5s"}`, false},
	{`{"to":"bob@example.org","body":"hi","extra":"x"}`, false},
	{`{"to":"bob@example.org","body":"hi"}{}`, false},
	{`{"to":"bob@example.org","body":"hi"} x`, false},
	{`{"to":"bob@example.org","body":"hi",}`, false},
	{`{"to":"bob@example.org" "body":"hi"}`, false},
	{`{"to":"bob@example.org","body":"hi"`, false},
	{`{"to":"bob@example.org","body":"hi`, false},
	{`{"to"`, false},
	{`{`, false},
	{``, false},
	{`   `, false},
	{`null`, false},
	{`[]`, false},
	{`"x"`, false},
	{"\xef\xbb\xbf{}", false},
	{`{,}`, false},
	{`{"to":}`, false},
}

// TestDecodeFast: the usual bodies are decoded without encoding/json, to
// what decodeJSON gives; the others are left to it untouched.
func TestDecodeFast(t *testing.T) {
	for _, c := range fastSeeds {
		if got := checkFast(t, []byte(c.body)); got != c.fast {
			t.Errorf("%q: decodeFast took it: %v, want %v", c.body, got, c.fast)
		}
	}
}

// FuzzDecodeFast: whatever decodeFast accepts, decodeJSON decodes to the
// same value.
func FuzzDecodeFast(f *testing.F) {
	for _, c := range fastSeeds {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFast(t, data)
	})
}

// BenchmarkDecodeBody measures decoding the usual POST /v1/messages body
// with decodeFast and with encoding/json.
func BenchmarkDecodeBody(b *testing.B) {
	body := []byte(`{"to":"bob@example.org","body":"benchmark message"}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req sendRequest
			if !req.decodeFast(body) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req sendRequest
			if p := decodeJSON(body, &req); p != nil {
				b.Fatal(p.Detail)
			}
		}
	})
}

// BenchmarkDecodeSlow measures decoding bodies that decodeFast leaves to
// decodeJSON (a POST /v1/messages with wait_timeout, a POST /v1/notify),
// and checkNames alone, which reads them once more before encoding/json
// does and allocates nothing (TestCheckNamesAllocations).
func BenchmarkDecodeSlow(b *testing.B) {
	send := []byte(`{"to":"bob@example.org","body":"hi","wait":"server","wait_timeout":"5s"}`)
	notify := []byte(`{"to":"bob@example.org","title":"disk full","body":"on host a","priority":2}`)
	b.Run("send-wait_timeout", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req sendRequest
			if p := decodeJSON(send, &req); p != nil {
				b.Fatal(p.Detail)
			}
		}
	})
	b.Run("notify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req notifyRequest
			if p := decodeJSON(notify, &req); p != nil {
				b.Fatal(p.Detail)
			}
		}
	})
	b.Run("checkNames-notify", func(b *testing.B) {
		b.ReportAllocs()
		var req notifyRequest
		for b.Loop() {
			if p := checkNames(notify, &req); p != nil {
				b.Fatal(p.Detail)
			}
		}
	})
}
