package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// ProblemTypePrefix starts the type URI of every problem document the
// gateway writes; the rest is the problem's stable name, such as
// "invalid-jid" (see the package documentation for the list).
const ProblemTypePrefix = "urn:xmpptrack:problem:"

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Extension members.
	Field string   `json:"field,omitempty"`
	ID    string   `json:"id,omitempty"`
	State string   `json:"state,omitempty"`
	Limit string   `json:"limit,omitempty"`
	Valid []string `json:"valid,omitempty"`
	name  string
}

func (p *problem) Error() string { return p.name + ": " + p.Detail }

// The problems the API answers with: one per name, the name being the end of
// the type URI.
var problemTitles = map[string]struct {
	status int
	title  string
}{
	"unauthorized":         {http.StatusUnauthorized, "Missing or invalid bearer token"},
	"rate-limited":         {http.StatusTooManyRequests, "Too many requests for this token"},
	"not-found":            {http.StatusNotFound, "No such resource"},
	"method-not-allowed":   {http.StatusMethodNotAllowed, "Method not allowed on this resource"},
	"body-too-large":       {http.StatusRequestEntityTooLarge, "Request body too large"},
	"unsupported-media":    {http.StatusUnsupportedMediaType, "Request body must be application/json"},
	"malformed-json":       {http.StatusBadRequest, "Request body is not valid JSON"},
	"unknown-field":        {http.StatusBadRequest, "Request body has an unknown field"},
	"wrong-type":           {http.StatusBadRequest, "A field has the wrong JSON type"},
	"missing-field":        {http.StatusUnprocessableEntity, "A required field is missing"},
	"invalid-field":        {http.StatusUnprocessableEntity, "A field has an invalid value"},
	"invalid-jid":          {http.StatusUnprocessableEntity, "Invalid XMPP address"},
	"invalid-duration":     {http.StatusUnprocessableEntity, "Invalid duration"},
	"invalid-time":         {http.StatusUnprocessableEntity, "Invalid time"},
	"unknown-account":      {http.StatusUnprocessableEntity, "No such account in this gateway"},
	"invalid-cursor":       {http.StatusBadRequest, "Invalid cursor"},
	"cursor-expired":       {http.StatusGone, "The changes after this cursor are no longer kept"},
	"wait-too-long":        {http.StatusBadRequest, "Requested wait is longer than allowed"},
	"invalid-query":        {http.StatusBadRequest, "Invalid query parameter"},
	"idempotency-mismatch": {http.StatusUnprocessableEntity, "Idempotency-Key reused with a different request"},
	"invalid-idempotency":  {http.StatusBadRequest, "Invalid Idempotency-Key header"},
	"idempotency-gone":     {http.StatusGone, "The message of this Idempotency-Key is no longer kept"},
	"not-cancellable":      {http.StatusConflict, "The message was already sent"},
	"send-failed":          {http.StatusBadGateway, "The message could not be sent"},
	"test-failed":          {http.StatusBadGateway, "The test message did not reach the recipient"},
	"test-timeout":         {http.StatusGatewayTimeout, "The test message was not delivered in time"},
	"unavailable":          {http.StatusServiceUnavailable, "Not ready"},
	"send-uncertain":       {http.StatusServiceUnavailable, "Whether the message was recorded, and will be sent, is unknown"},
	"internal":             {http.StatusInternalServerError, "Internal error"},
}

// newProblem returns the problem called name with a detail.
func newProblem(name, detail string) *problem {
	t, ok := problemTitles[name]
	if !ok {
		panic("gateway: unknown problem " + name)
	}
	return &problem{Type: ProblemTypePrefix + name, Title: t.title, Status: t.status, Detail: detail, name: name}
}

func fieldProblem(name, field, detail string) *problem {
	p := newProblem(name, detail)
	p.Field = field
	return p
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, p *problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if p.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="xmpptrack"`)
	}
	b, _ := json.Marshal(p)
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(p.Status)
	w.Write(append(b, '\n'))
}

// Header values shared by every JSON response (net/http only reads them;
// an Add would copy, as they are full).
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
)

// write writes r with status: the answer of every POST, without
// reflection, from a pooled buffer (Write copies it), with the
// Content-Length net/http sets itself for a body written whole before the
// handler returns.
func (r sendResponse) write(w http.ResponseWriter, status int) {
	buf := respPool.Get().(*[]byte)
	b := append(r.appendJSON((*buf)[:0]), '\n')
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	w.WriteHeader(status)
	w.Write(b)
	*buf = b
	respPool.Put(buf)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, newProblem("internal", "encoding the response failed"))
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	w.Write(b)
}

var respPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}
