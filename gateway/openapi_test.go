package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestOpenAPI checks the document served at /v1/openapi.json (it must be a
// valid OpenAPI 3.1 document) and validates real requests and the
// gateway's real responses against it: every valid request passes request
// validation, every bad one fails it, and every response, success or
// problem, matches the document.
func TestOpenAPI(t *testing.T) { records(t, testOpenAPI) }

func testOpenAPI(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{MaxBody: 1024}))
	code, _, b := f.do("GET", "/v1/openapi.json", "")
	if code != 200 {
		t.Fatalf("GET openapi.json: %d", code)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	ctx := context.Background()
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("invalid document: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}

	f.fake.sentCh = make(chan string, 100)
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	sched := f.send(`{"to":"bob@example.org","body":"later","send_at":"` + later + `"}`)
	sent := f.send(`{"to":"bob@example.org","body":"now","channel":"ops"}`)
	<-f.fake.sentCh
	tr := f.fake.tracker(sent.ID)
	tr.Advance(tracking.DeliveredToServer, nil)
	tr.Advance(tracking.Error, &tracking.Response{Err: errTest})
	f.waitState(sent.ID, tracking.Error)

	type call struct {
		method, path, body string
		hdr                []string
		valid              bool // the request conforms to the document
	}
	calls := []call{
		{"POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","type":"chat","thread":"t","window":"1m","channel":"ops"}`, []string{"Idempotency-Key", "k1"}, true},
		{"POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","type":"chat","thread":"t","window":"1m","channel":"ops"}`, []string{"Idempotency-Key", "k1"}, true},
		{"POST", "/v1/messages", `{"to":"bob@example.org","body":"other"}`, []string{"Idempotency-Key", "k1"}, true},
		{"POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","wait":"server","wait_timeout":"10ms"}`, nil, true},
		{"POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","send_at":"` + later + `"}`, nil, true},
		{"GET", "/v1/messages/" + sent.ID, "", nil, true},
		{"GET", "/v1/messages/" + sched.ID, "", nil, true},
		{"DELETE", "/v1/messages/" + sched.ID, "", nil, true},
		{"DELETE", "/v1/messages/" + sent.ID, "", nil, true},
		{"GET", "/v1/messages/unknown", "", nil, true},
		{"GET", "/v1/events?after=0&limit=50&channels=ops,x&wait=0s", "", nil, true},
		{"GET", "/v1/events?wait=0s", "", nil, true},
		{"POST", "/v1/notify", `{"to":"bob@example.org","title":"t","body":"b","priority":2}`, nil, true},
		{"POST", "/v1/test", `{"to":"bob@example.org","timeout":"10ms"}`, nil, true},
		{"GET", "/healthz", "", []string{"Authorization", ""}, true},
		{"GET", "/readyz", "", nil, true},
		{"GET", "/metrics", "", nil, true},
		{"GET", "/v1/openapi.json", "", nil, true},
		// Bad requests: the document refuses them too, and the problem
		// documents conform.
		{"POST", "/v1/messages", `{"to":"bob@example.org"}`, nil, false},
		{"POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","bcc":"x"}`, nil, false},
		{"POST", "/v1/messages", `{"to":42,"body":"hi"}`, nil, false},
		{"POST", "/v1/messages", `{"to":"bob@example.org","body":"hi","type":"headline"}`, nil, false},
		{"POST", "/v1/notify", `{"to":"bob@example.org","priority":9}`, nil, false},
		{"GET", "/v1/events?limit=5000", "", nil, false},
		{"POST", "/v1/messages", `{"to":"bob@example.org","body":"hi"}`, []string{"Authorization", ""}, false},
	}
	for _, c := range calls {
		req, _ := http.NewRequest(c.method, f.srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(c.hdr); i += 2 {
			if c.hdr[i+1] == "" {
				req.Header.Del(c.hdr[i])
			} else {
				req.Header.Set(c.hdr[i], c.hdr[i+1])
			}
		}
		name := c.method + " " + c.path
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s: no route in the document: %v", name, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: bearerCheck}}
		rerr := openapi3filter.ValidateRequest(ctx, in)
		if c.valid && rerr != nil {
			t.Errorf("%s: valid request refused by the document: %v", name, rerr)
		}
		if !c.valid && rerr == nil {
			t.Errorf("%s: bad request accepted by the document", name)
		}
		// Send the request as it was (ValidateRequest read the body).
		req.Body = io.NopCloser(strings.NewReader(c.body))
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !c.valid && (resp.StatusCode < 400 || resp.StatusCode >= 500) {
			t.Errorf("%s: status %d for a request the document refuses: %s", name, resp.StatusCode, body)
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
			Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			t.Errorf("%s: response %d does not match the document: %v\n%s", name, resp.StatusCode, err, body)
		}
	}
	// Every route of the gateway is in the document.
	for _, p := range []string{"/v1/messages", "/v1/messages/{id}", "/v1/events", "/v1/notify", "/v1/test", "/v1/openapi.json", "/healthz", "/readyz", "/metrics", "/", "/login"} {
		if doc.Paths.Find(p) == nil {
			t.Errorf("%s is not in the document", p)
		}
	}
}

// bearerCheck stands for the gateway's own authentication: the document
// only says a bearer token is needed.
func bearerCheck(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
		return nil
	}
	return errTest
}
