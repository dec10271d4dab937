package gateway

import "unicode/utf8"

// decodeFast fills req from the common shape of a POST /v1/messages body,
// without reflection: one JSON object whose members are only the string
// fields to, body, type, from, thread, channel and wait (each name exactly
// so, each value a string without escapes and of valid UTF-8), with JSON
// whitespace anywhere and nothing after it. It reports false for anything
// else, and the caller decodes the body with encoding/json, which also
// words the errors; what it accepts, it decodes as encoding/json does (a
// repeated member: the last one counts). The strings share one copy of the
// body.
func (req *sendRequest) decodeFast(data []byte) bool {
	var s string // the body as a string, made at the first value
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipWS(data, i+1)
	var out sendRequest
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		for {
			name, j, ok := plainString(data, i)
			if !ok {
				return false
			}
			i = skipWS(data, j)
			if i >= len(data) || data[i] != ':' {
				return false
			}
			i = skipWS(data, i+1)
			start := i + 1
			_, j, ok = plainString(data, i)
			if !ok {
				return false
			}
			if s == "" {
				s = string(data)
			}
			v := s[start : j-1]
			switch string(name) {
			case "to":
				out.To = v
			case "body":
				out.Body = &v
			case "type":
				out.Type = v
			case "from":
				out.From = v
			case "thread":
				out.Thread = v
			case "channel":
				out.Channel = v
			case "wait":
				out.Wait = v
			default:
				return false
			}
			i = skipWS(data, j)
			if i >= len(data) {
				return false
			}
			if data[i] == '}' {
				i++
				break
			}
			if data[i] != ',' {
				return false
			}
			i = skipWS(data, i+1)
		}
	}
	if skipWS(data, i) != len(data) {
		return false
	}
	*req = out
	return true
}

// skipWS returns the index of the first byte at or after i that is not JSON
// whitespace.
func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string starting at b[i] that has no escapes, no
// control characters and is valid UTF-8: its contents, and the index after
// its closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(b[i+1:j]) {
				return nil, 0, false
			}
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, 0, false
}
