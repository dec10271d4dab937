package gateway

import (
	"net/http"
	"unicode/utf8"
)

// decodeSend reads and decodes a POST /v1/messages body as decodeBody
// does: its usual form with decodeFast, anything else with encoding/json.
func decodeSend(w http.ResponseWriter, r *http.Request, limit int64) (req sendRequest, _ *problem) {
	buf, p := readBody(w, r, limit)
	if p != nil {
		return req, p
	}
	defer putBody(buf)
	if req.decodeFast(buf.Bytes()) {
		return req, nil
	}
	// A variable of its own, so that req stays on the stack when
	// encoding/json is not needed.
	slow := new(sendRequest)
	p = decodeJSON(buf.Bytes(), slow)
	return *slow, p
}

// decodeFast decodes data if it is the usual form of a POST /v1/messages
// body, and reports whether it did; when it did not, req is left zero.
//
// The usual form is one JSON object whose members are among to, body,
// type, from, thread, channel and wait, each at most once, their names in
// lower case without escapes, each value a string without escape sequences
// or control characters, of valid UTF-8. Anything else (a window, send_at
// or wait_timeout, a null, a number, an escape, a control character, a
// duplicate or unknown member, malformed JSON, trailing data) is left to
// decodeJSON, which also gives every error. decodeFast accepts only what
// decodeJSON decodes without error, to the same value (FuzzDecodeFast
// compares the two), for a tenth of its CPU and without its decoder's
// allocations (BenchmarkDecodeBody).
func (req *sendRequest) decodeFast(data []byte) bool {
	if !req.decodeFastFields(data) {
		*req = sendRequest{}
		return false
	}
	return true
}

// decodeFastFields is decodeFast without the reset: when it reports false,
// it may have set some of req's fields.
func (req *sendRequest) decodeFastFields(data []byte) bool {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	var seen uint8
	for {
		key, j, ok := plainString(data, i)
		if !ok {
			return false
		}
		i = skipSpace(data, j)
		if i == len(data) || data[i] != ':' {
			return false
		}
		val, j, ok := plainString(data, skipSpace(data, i+1))
		if !ok {
			return false
		}
		var bit uint8
		switch string(key) {
		case "to":
			bit, req.To = 1, string(val)
		case "body":
			s := string(val)
			bit, req.Body = 2, &s
		case "type":
			bit, req.Type = 4, string(val)
		case "from":
			bit, req.From = 8, string(val)
		case "thread":
			bit, req.Thread = 16, string(val)
		case "channel":
			bit, req.Channel = 32, string(val)
		case "wait":
			bit, req.Wait = 64, string(val)
		default:
			return false
		}
		if seen&bit != 0 {
			return false // a duplicate: encoding/json's rules apply
		}
		seen |= bit
		i = skipSpace(data, j)
		if i == len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainString reads the JSON string that starts at data[i] if it holds no
// escape sequence and no control character and is valid UTF-8: its content
// is then its value. It returns the content and the index after the
// closing quote.
func plainString(data []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s = data[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, 0, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}
