package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBodyFraming sends bodies framed every way HTTP/1.1 allows, on
// connections of their own through net/http's server, at and around the
// limit: each is accepted or refused as it should, a body declared over
// the limit is refused without "100 Continue" and unread, and a refused
// body's connection is closed after the answer rather than read on.
func TestBodyFraming(t *testing.T) {
	const limit = 1000
	f := newFixture(t, Config{MaxBody: limit})
	addr := strings.TrimPrefix(f.srv.URL, "http://")
	hdr := "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testToken + "\r\nContent-Type: application/json\r\n"
	bodyOf := func(n int) string { // a valid request of n bytes
		b := `{"to":"bob@example.org","body":"` + strings.Repeat("x", n-len(`{"to":"bob@example.org","body":""}`)) + `"}`
		if len(b) != n {
			t.Fatalf("body of %d bytes", len(b))
		}
		return b
	}
	ok, exact, over, big := bodyOf(40), bodyOf(limit), bodyOf(limit+1), bodyOf(2*limit)
	chunked := func(s string) string {
		return "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(s), s)
	}
	length := func(s string) string { return fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(s), s) }
	const expect = "Expect: 100-continue\r\n"
	for _, c := range []struct {
		name, req string
		status    int
		problem   string
		continued bool // "100 Continue" came first
		halfClose bool // the client ends its side after the request
	}{
		{"chunked", hdr + chunked(ok), 202, "", false, false},
		{"chunked over the limit", hdr + chunked(big), 413, "body-too-large", false, false},
		{"length at the limit", hdr + length(exact), 202, "", false, false},
		{"length over the limit", hdr + length(over), 413, "body-too-large", false, false},
		{"length over the limit, 100-continue", hdr + expect + length(big), 413, "body-too-large", false, false},
		{"length, 100-continue", hdr + expect + length(ok), 202, "", true, false},
		{"length longer than the body", hdr + "Content-Length: 900\r\n\r\n" + ok, 400, "malformed-json", false, true},
		{"length and chunked", hdr + "Content-Length: 10\r\n" + chunked(big), 413, "body-too-large", false, false},
	} {
		sent := f.fake.count()
		tooLarge := c.status == http.StatusRequestEntityTooLarge
		resp, continued, closed := rawPost(t, addr, c.req, c.halfClose, tooLarge)
		if resp.StatusCode != c.status || continued != c.continued {
			t.Errorf("%s: %d (100 Continue first: %v), want %d (%v)", c.name, resp.StatusCode, continued, c.status, c.continued)
			continue
		}
		wantSent := sent
		if c.status == http.StatusAccepted {
			wantSent++
		} else {
			b, _ := io.ReadAll(resp.Body)
			if p := problemOf(t, resp.Header, b); p.Type != ProblemTypePrefix+c.problem {
				t.Errorf("%s: %s", c.name, b)
			}
			if tooLarge && (!closed || !resp.Close) {
				t.Errorf("%s: connection left open after the answer (Connection: close %v)", c.name, resp.Close)
			}
		}
		if n := f.fake.count(); n != wantSent {
			t.Errorf("%s: %d sent, want %d", c.name, n-sent, wantSent-sent)
		}
	}
}

// rawPost writes req whole on a connection of its own (then ends its side
// if halfClose) and reads the answer, after a 100 Continue if any. With
// waitClose it then reads on: closed reports that the server ended the
// connection (rather than waiting for the next request until the test's
// bound).
func rawPost(t *testing.T, addr, req string, halfClose, waitClose bool) (resp *http.Response, continued, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	br := bufio.NewReader(c)
	for {
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusContinue {
			break
		}
		continued = true
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	if waitClose {
		_, err = br.ReadByte()
		closed = err == io.EOF
	}
	return resp, continued, closed
}
