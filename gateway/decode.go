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
// surrogate escape ("\ud800") anywhere in data, which encoding/json would
// replace with U+FFFD: text sent altered. Anything but valid JSON is left
// to encoding/json, whose errors say more. v points to a struct.
//
// It reads data once, allocating nothing unless it refuses it or a member
// name holds an escape: it follows strings and nesting only (the object's
// members are those at depth 1), and makes sure data is valid JSON
// (json.Valid) only when it found something to refuse.
func checkNames(data []byte, v any) *problem {
	var names []string
	if i := skipSpace(data, 0); i < len(data) && data[i] == '{' {
		names = namesOf(reflect.TypeOf(v).Elem())
	}
	var (
		bad   *problem // for the first member name refused
		seen  uint64   // names[i] was seen: bit i
		depth int
		key   bool // the next string is a member name of the object
	)
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			depth++
			key = depth == 1 && names != nil
		case '[':
			depth++
			key = false
		case '}', ']':
			depth--
		case ',':
			key = depth == 1 && names != nil
		case '"':
			end, escaped, lone := scanString(data, i)
			if end < 0 {
				return nil // cut short: encoding/json says so
			}
			if lone {
				if !json.Valid(data) {
					return nil
				}
				return newProblem("malformed-json", `the body holds a lone UTF-16 surrogate escape (such as "\ud800"), which is no character`)
			}
			if key && bad == nil {
				bad = checkName(names, data[i:end], escaped, &seen)
			}
			key = false
			i = end - 1
		}
	}
	if bad != nil && !json.Valid(data) {
		return nil
	}
	return bad
}

// checkName checks one member name, quoted as in the body, against names,
// and marks it seen.
func checkName(names []string, quoted []byte, escaped bool, seen *uint64) *problem {
	raw := quoted[1 : len(quoted)-1]
	var name string
	if escaped {
		var ok bool
		if name, ok = unquote(quoted); !ok {
			return nil // not valid JSON: encoding/json says so
		}
	}
	i := 0
	for ; i < len(names); i++ {
		if (!escaped && string(raw) == names[i]) || (escaped && name == names[i]) {
			break
		}
	}
	if i < len(names) && *seen&(1<<i) == 0 {
		*seen |= 1 << i
		return nil
	}
	if !escaped {
		name = string(raw)
		if !utf8.Valid(raw) {
			name, _ = unquote(quoted) // each bad byte U+FFFD, as encoding/json has it
		}
	}
	if i < len(names) {
		return fieldProblem("malformed-json", name, fmt.Sprintf("field %q appears more than once", name))
	}
	detail := fmt.Sprintf("field %q is not part of the API", name)
	if i := slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, name) }); i >= 0 {
		detail += fmt.Sprintf(" (names are case-sensitive: %q)", names[i])
	}
	return fieldProblem("unknown-field", name, detail)
}

// unquote decodes a quoted JSON string with escapes as encoding/json
// decodes it ("t\u006f" is "to"). Rare: a function of its own, so that
// checkName allocates nothing for the usual names.
func unquote(quoted []byte) (string, bool) {
	var s string
	err := json.Unmarshal(quoted, &s)
	return s, err == nil
}

// scanString reads the JSON string whose opening quote is data[i]. It
// returns the index just past its closing quote (-1 if data ends first)
// and whether the string holds escapes; at the first \\u escape of a
// UTF-16 surrogate that is not the first half of a pair followed by its
// second half, it stops and reports lone (end is then not the string's).
func scanString(data []byte, i int) (end int, escaped, lone bool) {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '"':
			return i + 1, escaped, false
		case '\\':
			escaped = true
			i++ // an escape is whole, or the JSON is not valid
			if i >= len(data) || data[i] != 'u' {
				continue
			}
			if i+4 >= len(data) {
				return -1, escaped, false
			}
			r := hex4(data[i+1 : i+5])
			i += 4
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return i + 1, true, true // a second half first
			case r >= 0xD800 && r <= 0xDBFF:
				if i+6 >= len(data) || data[i+1] != '\\' || data[i+2] != 'u' {
					return i + 1, true, true
				}
				if r2 := hex4(data[i+3 : i+7]); r2 < 0xDC00 || r2 > 0xDFFF {
					return i + 1, true, true
				}
				i += 6
			}
		}
	}
	return -1, escaped, false
}

// hex4 reads four hex digits (valid JSON's; anything else reads as some
// value, the JSON being refused anyway).
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

// memberNames holds the JSON member names of the request types:
// reflect.Type to []string, filled once per type.
var memberNames sync.Map

// namesOf returns the JSON member names of a struct type's fields,
// computed once per type.
func namesOf(t reflect.Type) []string {
	if n, ok := memberNames.Load(t); ok {
		return n.([]string)
	}
	n := jsonNames(t)
	if len(n) > 64 {
		panic("gateway: a request type has more than 64 members") // seen's bits in checkNames
	}
	memberNames.Store(t, n)
	return n
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
