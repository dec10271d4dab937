package gateway

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestBadInput sends bad requests: each gets a 4xx problem document with
// its stable type, and nothing is sent, recorded or cancelled.
func TestBadInput(t *testing.T) { records(t, testBadInput) }

func testBadInput(t *testing.T, rc Config) {
	f := newFixture(t, with(rc, Config{MaxBody: 1024, MaxWait: time.Minute}))
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	sched := f.send(`{"to":"bob@example.org","body":"scheduled","send_at":"` + later + `"}`)
	sentMsg := f.send(`{"to":"bob@example.org","body":"sent"}`, "Idempotency-Key", "used")
	head := sentMsg.Cursor
	sentBefore := f.fake.count()

	msg := func(extra string) string { return `{"to":"bob@example.org","body":"hi"` + extra + `}` }
	rows := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		typ                      string
	}{
		{"malformed JSON", "POST", "/v1/messages", `{"to":`, nil, 400, "malformed-json"},
		{"not an object", "POST", "/v1/messages", `[1,2]`, nil, 400, "wrong-type"},
		{"empty body", "POST", "/v1/messages", ``, nil, 400, "malformed-json"},
		{"trailing data", "POST", "/v1/messages", msg(``) + `{}`, nil, 400, "malformed-json"},
		{"unknown field", "POST", "/v1/messages", msg(`,"bcc":"eve@example.org"`), nil, 400, "unknown-field"},
		{"to is a number", "POST", "/v1/messages", `{"to":42,"body":"hi"}`, nil, 400, "wrong-type"},
		{"body is an object", "POST", "/v1/messages", `{"to":"bob@example.org","body":{}}`, nil, 400, "wrong-type"},
		{"window is a number", "POST", "/v1/messages", msg(`,"window":30`), nil, 400, "wrong-type"},
		{"missing to", "POST", "/v1/messages", `{"body":"hi"}`, nil, 422, "missing-field"},
		{"missing body", "POST", "/v1/messages", `{"to":"bob@example.org"}`, nil, 422, "missing-field"},
		{"empty body text", "POST", "/v1/messages", `{"to":"bob@example.org","body":""}`, nil, 422, "invalid-field"},
		{"invalid JID", "POST", "/v1/messages", `{"to":"bob@@example.org","body":"hi"}`, nil, 422, "invalid-jid"},
		{"JID with bad domain", "POST", "/v1/messages", `{"to":"bob@exa mple.org","body":"hi"}`, nil, 422, "invalid-jid"},
		{"room JID with a nick", "POST", "/v1/messages", `{"to":"room@muc.example.org/nick","body":"hi","type":"groupchat"}`, nil, 422, "invalid-jid"},
		{"unknown type", "POST", "/v1/messages", msg(`,"type":"headline"`), nil, 422, "invalid-field"},
		{"unknown account", "POST", "/v1/messages", msg(`,"from":"mallory@example.org"`), nil, 422, "unknown-account"},
		{"invalid from", "POST", "/v1/messages", msg(`,"from":"@@"`), nil, 422, "invalid-jid"},
		{"negative window", "POST", "/v1/messages", msg(`,"window":"-5s"`), nil, 422, "invalid-duration"},
		{"window too long", "POST", "/v1/messages", msg(`,"window":"1000h"`), nil, 422, "invalid-duration"},
		{"not a duration", "POST", "/v1/messages", msg(`,"window":"soon"`), nil, 422, "invalid-duration"},
		{"send_at not RFC 3339", "POST", "/v1/messages", msg(`,"send_at":"tomorrow"`), nil, 422, "invalid-time"},
		{"send_at a number", "POST", "/v1/messages", msg(`,"send_at":5`), nil, 400, "wrong-type"},
		{"send_at an object", "POST", "/v1/messages", msg(`,"send_at":{}`), nil, 400, "wrong-type"},
		{"send_at too far", "POST", "/v1/messages", msg(`,"send_at":"2999-01-01T00:00:00Z"`), nil, 422, "invalid-time"},
		{"bad channel", "POST", "/v1/messages", msg(`,"channel":"a b"`), nil, 422, "invalid-field"},
		{"unknown wait", "POST", "/v1/messages", msg(`,"wait":"read"`), nil, 422, "invalid-field"},
		{"wait too long", "POST", "/v1/messages", msg(`,"wait":"seen","wait_timeout":"2h"`), nil, 400, "wait-too-long"},
		{"wait_timeout without wait", "POST", "/v1/messages", msg(`,"wait_timeout":"5s"`), nil, 422, "invalid-field"},
		{"invalid UTF-8", "POST", "/v1/messages", "{\"to\":\"bob@example.org\",\"body\":\"a\xffb\"}", nil, 400, "malformed-json"},
		{"lone surrogate", "POST", "/v1/messages", `{"to":"bob@example.org","body":"pay \ud800 now"}`, nil, 400, "malformed-json"},
		{"reversed surrogates", "POST", "/v1/notify", `{"to":"bob@example.org","title":"\ude00\ud83d"}`, nil, 400, "malformed-json"},
		{"control character", "POST", "/v1/messages", `{"to":"bob@example.org","body":"a\u0001b"}`, nil, 422, "invalid-field"},
		{"thread too long", "POST", "/v1/messages", msg(`,"thread":"` + strings.Repeat("t", 300) + `"`), nil, 422, "invalid-field"},
		{"oversized body", "POST", "/v1/messages", `{"to":"bob@example.org","body":"` + strings.Repeat("x", 2000) + `"}`, nil, 413, "body-too-large"},
		{"wrong content type", "POST", "/v1/messages", msg(``), []string{"Content-Type", "text/plain"}, 415, "unsupported-media"},
		{"idempotency key reused", "POST", "/v1/messages", `{"to":"bob@example.org","body":"other"}`, []string{"Idempotency-Key", "used"}, 422, "idempotency-mismatch"},
		{"idempotency key too long", "POST", "/v1/messages", msg(``), []string{"Idempotency-Key", strings.Repeat("k", 300)}, 400, "invalid-idempotency"},
		{"notify priority 7", "POST", "/v1/notify", `{"to":"bob@example.org","title":"x","priority":7}`, nil, 422, "invalid-field"},
		{"notify priority string", "POST", "/v1/notify", `{"to":"bob@example.org","title":"x","priority":"high"}`, nil, 400, "wrong-type"},
		{"notify without text", "POST", "/v1/notify", `{"to":"bob@example.org"}`, nil, 422, "missing-field"},
		{"test invalid JID", "POST", "/v1/test", `{"to":"not a jid"}`, nil, 422, "invalid-jid"},
		{"test timeout too long", "POST", "/v1/test", `{"to":"bob@example.org","timeout":"1h"}`, nil, 400, "wait-too-long"},
		{"cursor from the future", "GET", "/v1/events?after=999999", ``, nil, 400, "invalid-cursor"},
		{"cursor not a number", "GET", "/v1/events?after=abc", ``, nil, 400, "invalid-cursor"},
		{"negative cursor", "GET", "/v1/events?after=-1", ``, nil, 400, "invalid-cursor"},
		{"Last-Event-ID from the future", "GET", "/v1/events", ``, []string{"Accept", "text/event-stream", "Last-Event-ID", "99999"}, 400, "invalid-cursor"},
		{"events wait too long", "GET", "/v1/events?wait=2h", ``, nil, 400, "wait-too-long"},
		{"events negative wait", "GET", "/v1/events?wait=-1s", ``, nil, 422, "invalid-duration"},
		{"events limit 0", "GET", "/v1/events?limit=0", ``, nil, 400, "invalid-query"},
		{"events unknown parameter", "GET", "/v1/events?since=1", ``, nil, 400, "invalid-query"},
		{"events bad channel", "GET", "/v1/events?channels=a,b%20c", ``, nil, 400, "invalid-query"},
		// Refused, not read as all channels: url.ParseQuery drops a pair
		// with a ';', and a list naming no channel would filter nothing.
		{"events channels with a semicolon", "GET", "/v1/events?channels=ops;billing", ``, nil, 400, "invalid-query"},
		{"events channels naming none", "GET", "/v1/events?channels=,", ``, nil, 400, "invalid-query"},
		{"events channels empty", "GET", "/v1/events?channels=", ``, nil, 400, "invalid-query"},
		{"cancel a sent message", "DELETE", "/v1/messages/" + sentMsg.ID, ``, nil, 409, "not-cancellable"},
		{"cancel unknown", "DELETE", "/v1/messages/nope", ``, nil, 404, "not-found"},
		{"wrong method", "PUT", "/v1/messages", msg(``), nil, 405, "method-not-allowed"},
		{"unknown route", "POST", "/v2/messages", msg(``), nil, 404, "not-found"},
	}
	if len(rows) < 30 {
		t.Fatalf("only %d rows", len(rows))
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			code, h, b := f.do(r.method, r.path, r.body, r.hdr...)
			if code != r.status {
				t.Errorf("status %d, want %d: %s", code, r.status, b)
			}
			p := problemOf(t, h, b)
			if p.Type != ProblemTypePrefix+r.typ || p.Status != code || p.Title == "" {
				t.Errorf("problem %+v, want type %s", p, r.typ)
			}
		})
	}
	if n := f.fake.count(); n != sentBefore {
		t.Errorf("%d messages sent by bad requests", n-sentBefore)
	}
	if h, _ := f.g.rec.head(context.Background()); h != head {
		t.Errorf("the record moved from %d to %d", head, h)
	}
	if st := f.status(sched.ID); st.State.String() != "IN_TRANSIT" {
		t.Errorf("scheduled message is %s", st.State)
	}
}

// TestMemberNames: member names are matched exactly and at most once, as
// openapi.json describes the bodies (no other member): encoding/json alone
// takes "TO" for "to" and lets the last of two members win, so that a body
// a validator of the document reads as a message to bob would go to
// mallory. Bodies of the usual form and bodies encoding/json decodes
// (with a window, an escape) alike; every route with a body.
func TestMemberNames(t *testing.T) {
	f := newFixture(t, Config{})
	rows := []struct {
		path, body, typ, field string
	}{
		{"/v1/messages", `{"to":"bob@example.org","body":"x","TO":"mallory@example.org"}`, "unknown-field", "TO"},
		{"/v1/messages", `{"To":"mallory@example.org","body":"x"}`, "unknown-field", "To"},
		{"/v1/messages", `{"to":"bob@example.org","body":"x","window":"1m","Body":"y"}`, "unknown-field", "Body"},
		{"/v1/messages", `{"to":"bob@example.org","body":"a\"b","TO":"mallory@example.org"}`, "unknown-field", "TO"},
		{"/v1/messages", `{"to":"bob@example.org","body":"x","to":"mallory@example.org"}`, "malformed-json", "to"},
		{"/v1/messages", `{"to":"bob@example.org","body":"x","window":"1m","window":"2m"}`, "malformed-json", "window"},
		{"/v1/messages", `{"to":"bob@example.org","body":"x","t\u006f":"mallory@example.org"}`, "malformed-json", "to"},
		{"/v1/notify", `{"to":"bob@example.org","title":"t","TITLE":"u"}`, "unknown-field", "TITLE"},
		{"/v1/notify", `{"to":"bob@example.org","title":"t","priority":1,"priority":3}`, "malformed-json", "priority"},
		{"/v1/test", `{"to":"bob@example.org","Timeout":"1s"}`, "unknown-field", "Timeout"},
	}
	for _, r := range rows {
		code, h, b := f.do("POST", r.path, r.body)
		if code != 400 {
			t.Errorf("%s %s: %d %s", r.path, r.body, code, b)
			continue
		}
		if p := problemOf(t, h, b); p.Type != ProblemTypePrefix+r.typ || p.Field != r.field {
			t.Errorf("%s %s: %s", r.path, r.body, b)
		}
	}
	if n := f.fake.count(); n != 0 {
		t.Errorf("%d messages sent", n)
	}
	// An escaped name that is exactly a member's is that member.
	f.send(`{"t\u006f":"bob@example.org","body":"x"}`)
}

// TestCheckNames: only the names of the top-level object's members are
// checked (not those of nested objects, nor strings in arrays or values
// that look like names), the first refused wins, and a body that is not
// valid JSON, or not an object, is left to encoding/json.
func TestCheckNames(t *testing.T) {
	for _, c := range []struct{ body, typ, field string }{
		{`{"to":"x","body":"y"}`, "", ""},
		{`{"to":"x","body":"{\"TO\":1,\"to\":2}"}`, "", ""},
		{`{"to":"x","window":{"TO":1,"to":2,"to":3}}`, "", ""},
		{`{"to":"x","window":["TO","to",{"to":1}],"body":"y"}`, "", ""},
		{`{"to":"x","window":[{"a":1},"b"],"TO":"y"}`, "unknown-field", "TO"},
		{` {"Body":"x","to":"y","to":"z"} `, "unknown-field", "Body"},
		{`{"to":"x","to":"y","Body":"z"}`, "malformed-json", "to"},
		{`{"body":"x","\u0062ody":"y"}`, "malformed-json", "body"},
		{`{"to":"x","TO":"y"`, "", ""},
		{`{"to":"x","TO":"y"}}`, "", ""},
		{`{"to":"x","TO":"y"} {}`, "", ""},
		{`{"to":"x","TO":"y",}`, "", ""},
		{`["to","TO"]`, "", ""},
	} {
		p := checkNames([]byte(c.body), new(sendRequest))
		if c.typ == "" {
			if p != nil {
				t.Errorf("%s: %s %q, want nothing refused", c.body, p.Type, p.Field)
			}
			continue
		}
		if p == nil || p.Type != ProblemTypePrefix+c.typ || p.Field != c.field {
			t.Errorf("%s: %+v, want %s for %q", c.body, p, c.typ, c.field)
		}
	}
}

// TestLoneSurrogate: a \u escape of half a UTF-16 surrogate pair is no
// character; a whole pair is one, and an escaped backslash before "u" is
// no escape. It is refused wherever it is in a valid body (a member's
// name, a nested value), before a member name is; a body that is not
// valid JSON gets encoding/json's error instead.
func TestLoneSurrogate(t *testing.T) {
	const refused = "the body holds a lone UTF-16 surrogate escape"
	for body, lone := range map[string]bool{
		`{"body":"\ud83d\ude00"}`:        false,
		`{"body":"\uD83D\uDE00 \u00e9"}`: false,
		`{"body":"\\ud800"}`:             false,
		`{"body":"\ud800"}`:              true,
		`{"body":"\ud800x"}`:             true,
		`{"body":"\ud800\u0041"}`:        true,
		`{"body":"\udc00"}`:              true,
		`{"body":"\ud83d\ude00\udfff"}`:  true,
		`{"b\udc00":"x"}`:                true,
		`{"TO":"x","body":"\ud800"}`:     true,
		`{"window":["\ud800"]}`:          true,
		`"\ud800"`:                       true,
		`{"body":"\ud800",}`:             false,
		`{"body":"\ud800"`:               false,
		`{"body":"\ud8`:                  false,
	} {
		p := decodeJSON([]byte(body), new(sendRequest))
		if got := p != nil && strings.HasPrefix(p.Detail, refused); got != lone {
			t.Errorf("%s: lone %v (%+v), want %v", body, got, p, lone)
		}
	}
	f := newFixture(t, Config{})
	f.send(`{"to":"bob@example.org","body":"\ud83d\ude00"}`)
	f.fake.mu.Lock()
	defer f.fake.mu.Unlock()
	if b := f.fake.sent[0].Body; b != "\U0001F600" {
		t.Errorf("sent %q", b)
	}
}

// TestThreadLengthInCharacters: thread's limit counts characters, as
// openapi.json's maxLength does, not bytes: 256 two-byte characters are
// taken, 257 refused.
func TestThreadLengthInCharacters(t *testing.T) {
	f := newFixture(t, Config{})
	if code, _, b := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"x","thread":"`+strings.Repeat("é", 256)+`"}`); code != 202 {
		t.Errorf("a thread of 256 characters: %d %s, want 202", code, b)
	}
	if code, _, b := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"x","thread":"`+strings.Repeat("é", 257)+`"}`); code != 422 {
		t.Errorf("a thread of 257 characters: %d %s, want 422", code, b)
	}
}

// TestSendAtWrongType: send_at of another JSON type than a string is
// wrong-type naming the field, as for every other field, not
// malformed-json with time.Time's own message and no field.
func TestSendAtWrongType(t *testing.T) {
	f := newFixture(t, Config{})
	code, _, b := f.do("POST", "/v1/messages", `{"to":"bob@example.org","body":"x","send_at":5}`)
	var p problem
	mustJSON(t, b, &p)
	if code != 400 || p.Field != "send_at" || !strings.HasSuffix(p.Type, "wrong-type") {
		t.Errorf("send_at 5: %d %s, want 400 wrong-type for field send_at", code, b)
	}
}
