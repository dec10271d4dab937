package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// Duration is a time.Duration written in JSON as a string in Go's syntax
// ("30s", "5m", "1h30m").
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return errBadDuration{s}
	}
	*d = Duration(v)
	return nil
}

type errBadDuration struct{ s string }

func (e errBadDuration) Error() string {
	return fmt.Sprintf("%q is not a Go duration such as \"30s\" or \"5m\"", e.s)
}

// jsonTime is a time in a request body: a JSON string in RFC 3339, as
// time.Time reads it. A value of another JSON type is refused as a
// json.UnmarshalTypeError, which names the field (wrong-type), where
// time.Time's own error names none.
type jsonTime time.Time

func (t *jsonTime) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '"' {
		return &json.UnmarshalTypeError{Value: "non-string", Type: reflect.TypeFor[string]()}
	}
	return (*time.Time)(t).UnmarshalJSON(b)
}

// State is a tracking.MessageState written in JSON by name
// ("SEEN_BY_RECIPIENT").
type State tracking.MessageState

// MarshalJSON writes the state's name.
func (s State) MarshalJSON() ([]byte, error) {
	// State names are plain ASCII: quoting needs no escaping.
	return strconv.AppendQuote(make([]byte, 0, 24), tracking.MessageState(s).String()), nil
}

// UnmarshalJSON reads a state's name.
func (s *State) UnmarshalJSON(b []byte) error {
	var n string
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	st, ok := tracking.ParseState(n)
	if !ok {
		return fmt.Errorf("unknown state %q", n)
	}
	*s = State(st)
	return nil
}

func (s State) String() string { return tracking.MessageState(s).String() }

// decodeBody reads one JSON object from the request into v, refusing
// unknown fields, trailing data and bodies over the limit.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) *problem {
	buf, p := readBody(w, r, limit)
	if p != nil {
		return p
	}
	defer putBody(buf)
	return decodeJSON(buf.Bytes(), v)
}

// readBody reads the request's body, which must be JSON and therefore
// UTF-8, into a pooled buffer, to give back with putBody.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (*bytes.Buffer, *problem) {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, newProblem("unsupported-media", "Content-Type is "+ct)
		}
	}
	if r.ContentLength > limit {
		// Refused unread: no "100 Continue" that invites the client to
		// send it, and on HTTP/1.x the connection closes after the
		// answer rather than net/http reading the rest.
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		return nil, bodyTooLarge(limit)
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	var err error
	tooLarge := false
	if r.ContentLength >= 0 {
		// The usual case: net/http's body ends at its Content-Length,
		// within the limit. Read without http.MaxBytesReader (an
		// allocation per request), still bounded in case a server that
		// is not net/http's lets a body run past its Content-Length.
		tooLarge, err = readLimited(buf, r.Body, limit)
	} else {
		// Of unknown length (chunked): http.MaxBytesReader also tells
		// net/http to close the connection rather than read the rest.
		_, err = buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
		var mb *http.MaxBytesError
		tooLarge = errors.As(err, &mb)
	}
	if tooLarge {
		putBody(buf)
		return nil, bodyTooLarge(limit)
	}
	if err != nil {
		putBody(buf)
		return nil, newProblem("malformed-json", "reading the body failed")
	}
	if !utf8.Valid(buf.Bytes()) {
		// JSON is UTF-8 (RFC 8259, section 8.1); encoding/json would
		// replace each bad byte with U+FFFD and send altered text.
		putBody(buf)
		return nil, newProblem("malformed-json", "the body is not valid UTF-8")
	}
	return buf, nil
}

func bodyTooLarge(limit int64) *problem {
	p := newProblem("body-too-large", fmt.Sprintf("the body is limited to %d bytes", limit))
	p.Limit = fmt.Sprint(limit)
	return p
}

// readLimited reads body to its end into buf, at most limit+1 bytes, and
// reports whether it holds more than limit. It reads straight into buf's
// free space: no reader wrapped around body, nothing allocated once buf
// has grown to the usual size (buf comes from bodyPool).
func readLimited(buf *bytes.Buffer, body io.Reader, limit int64) (tooLarge bool, err error) {
	for int64(buf.Len()) <= limit {
		if buf.Available() < bytes.MinRead {
			buf.Grow(bytes.MinRead)
		}
		p := buf.AvailableBuffer()
		if room := limit - int64(buf.Len()); room < int64(cap(p)) {
			p = p[:room+1] // one byte past the limit tells it was passed
		} else {
			p = p[:cap(p)]
		}
		n, err := body.Read(p)
		buf.Write(p[:n]) // where it already is: Write only extends buf
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, err
		}
	}
	return int64(buf.Len()) > limit, nil
}

// decodeJSON decodes data, one JSON object, into v, refusing unknown fields
// and trailing data. Member names are matched exactly, as openapi.json
// spells them, and each at most once (see checkNames).
func decodeJSON(data []byte, v any) *problem {
	if p := checkNames(data, v); p != nil {
		return p
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newProblem("malformed-json", "trailing data after the JSON object")
	}
	return nil
}

// checkNames refuses a member of the JSON object in data whose name is not
// exactly one of v's JSON names (unknown-field), or that appears twice
// (malformed-json, naming it: RFC 8259 leaves what a repeated name means to
// each parser). encoding/json alone matches names case-insensitively and
// lets the last of two members win, so that {"to":A,"TO":B} would be sent
// to B while a reader of the body against openapi.json (which allows no
// other member) sees a message to A. It also refuses a lone UTF-16
// surrogate escape ("\ud800"), which encoding/json would replace with
// U+FFFD: text sent altered. Anything but one valid JSON object is left to
// encoding/json, whose errors say more. v points to a struct.
func checkNames(data []byte, v any) *problem {
	if !json.Valid(data) {
		return nil
	}
	if loneSurrogate(data) {
		// encoding/json would replace it with U+FFFD: altered text.
		return newProblem("malformed-json", `the body holds a lone UTF-16 surrogate escape (such as "\ud800"), which is no character`)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, _ := dec.Token(); t != json.Delim('{') {
		return nil
	}
	names := jsonNames(reflect.TypeOf(v).Elem())
	var seen []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := t.(string)
		if !slices.Contains(names, name) {
			detail := fmt.Sprintf("field %q is not part of the API", name)
			if i := slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, name) }); i >= 0 {
				detail += fmt.Sprintf(" (names are case-sensitive: %q)", names[i])
			}
			return fieldProblem("unknown-field", name, detail)
		}
		if slices.Contains(seen, name) {
			return fieldProblem("malformed-json", name, fmt.Sprintf("field %q appears more than once", name))
		}
		seen = append(seen, name)
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return nil
		}
	}
	return nil
}

// loneSurrogate reports whether valid JSON data holds a \u escape of a
// UTF-16 surrogate that is not the first half of a pair followed by its
// second half.
func loneSurrogate(data []byte) bool {
	inString := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			i++ // valid JSON: an escape is whole
			if data[i] != 'u' {
				continue
			}
			r := hex4(data[i+1 : i+5])
			i += 4
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return true // a second half first
			case r >= 0xD800 && r <= 0xDBFF:
				if i+6 >= len(data) || data[i+1] != '\\' || data[i+2] != 'u' {
					return true
				}
				if r2 := hex4(data[i+3 : i+7]); r2 < 0xDC00 || r2 > 0xDFFF {
					return true
				}
				i += 6
			}
		}
	}
	return false
}

// hex4 reads four hex digits (valid JSON's).
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		default:
			r |= rune(c-'A') + 10
		}
	}
	return r
}

// jsonNames returns the JSON member names of a struct type's fields.
func jsonNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// bodyPool holds the buffers request bodies are read into (the decoder
// copies what it keeps).
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBody(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		b.Reset()
		bodyPool.Put(b)
	}
}

func jsonProblem(err error) *problem {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var bd errBadDuration
	switch {
	case errors.As(err, &se):
		return newProblem("malformed-json", fmt.Sprintf("syntax error at byte %d", se.Offset))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return newProblem("malformed-json", "the body is empty or cut short")
	case errors.As(err, &te):
		return fieldProblem("wrong-type", te.Field, fmt.Sprintf("field %q must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String())))
	case errors.As(err, &bd):
		return newProblem("invalid-duration", bd.Error())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fieldProblem("unknown-field", f, fmt.Sprintf("field %q is not part of the API", f))
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return newProblem("invalid-time", "times are RFC 3339, such as 2026-01-02T15:04:05Z")
	}
	return newProblem("malformed-json", err.Error())
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "uint64", "float64", "int8", "int16", "int32", "uint8", "uint16", "uint32":
		return "number"
	case "struct", "map":
		return "object"
	case "slice":
		return "array"
	case "bool":
		return "boolean"
	}
	return k
}
