package attach

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
)

func TestDiscover(t *testing.T) {
	domain := jid.MustParse("example.org")
	svc := &scriptedService{t: t, reply: func(to jid.JID, req xml.StartElement) string {
		switch {
		case req.Name.Space == discoNSItems && to.Equal(domain):
			return `<query xmlns='http://jabber.org/protocol/disco#items'>
				<item jid='conference.example.org'/>
				<item jid='gone.example.org'/>
				<item jid='example.org' node='x'/>
				<item jid='upload.example.org'/></query>`
		case req.Name.Space == discoNSInfo && to.String() == "conference.example.org":
			return `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='http://jabber.org/protocol/muc'/></query>`
		case req.Name.Space == discoNSInfo && to.String() == "gone.example.org":
			return `error:<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`
		case req.Name.Space == discoNSInfo && to.String() == "upload.example.org":
			return `<query xmlns='http://jabber.org/protocol/disco#info'>
				<identity category='store' type='file'/>
				<feature var='urn:xmpp:http:upload:0'/>
				<x xmlns='jabber:x:data' type='result'>
					<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0</value></field>
					<field var='max-file-size'><value>5242880</value></field></x>
				<x xmlns='jabber:x:data' type='result'>
					<field var='FORM_TYPE' type='hidden'><value>urn:example:other</value></field>
					<field var='max-file-size'><value>1</value></field></x></query>`
		}
		return `error:<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`
	}}
	got, err := discover(t.Context(), svc.query, domain)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Service{JID: jid.MustParse("upload.example.org"), MaxSize: 5242880}); !got.JID.Equal(want.JID) || got.MaxSize != want.MaxSize {
		t.Fatalf("discover = %+v, want %+v", got, want)
	}

	// The domain itself, without a limit.
	svc.reply = func(to jid.JID, req xml.StartElement) string {
		if req.Name.Space == discoNSItems {
			return `<query xmlns='http://jabber.org/protocol/disco#items'/>`
		}
		return `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:http:upload:0'/></query>`
	}
	if got, err = discover(t.Context(), svc.query, domain); err != nil || !got.JID.Equal(domain) || got.MaxSize != 0 {
		t.Fatalf("discover = %+v, %v; want the domain without a limit", got, err)
	}

	// None.
	svc.reply = func(to jid.JID, req xml.StartElement) string {
		if req.Name.Space == discoNSItems {
			return `<query xmlns='http://jabber.org/protocol/disco#items'><item jid='conference.example.org'/></query>`
		}
		return `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='http://jabber.org/protocol/muc'/></query>`
	}
	if _, err = discover(t.Context(), svc.query, domain); !errors.Is(err, ErrNoService) {
		t.Fatalf("discover without a service: %v, want ErrNoService", err)
	}
}

func TestUploadAndSend(t *testing.T) {
	hs := newUploadServer(t, false)
	svc := &scriptedService{t: t, reply: slotFor(hs.URL, "Authorization", "Bearer tok", "Cookie", "c=1", "X-Evil", "1", "Expires", "Wed, 21 Oct 2015 07:28:00 GMT")}
	u := testUploader(svc, Config{AllowPlaintext: true}, 1<<20)
	content := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320,000 bytes
	var progress []int64
	rec := &recordingSend{}
	sent, err := u.SendVia(t.Context(), File{
		Name:     "report.txt",
		Size:     int64(len(content)),
		Body:     bytes.NewReader(content),
		Caption:  "nightly report",
		Progress: func(n, total int64) { progress = append(progress, n) },
	}, rec.send)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hs.body, content) {
		t.Fatalf("server got %d bytes, want the %d sent", len(hs.body), len(content))
	}
	// Only the headers XEP-0363 lets the service set, and HTTP's own.
	var names []string
	for k := range hs.headers {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"Authorization", "Content-Length", "Content-Type", "Cookie", "Expires"}; !slices.Equal(names, want) {
		t.Errorf("PUT headers %v, want %v", names, want)
	}
	if ct := hs.headers.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the type guessed from .txt", ct)
	}
	if len(progress) == 0 || progress[len(progress)-1] != int64(len(content)) || !slices.IsSorted(progress) {
		t.Errorf("progress %v, want increasing up to %d", progress, len(content))
	}
	// The slot request named the file.
	reqs := svc.slotRequests()
	if len(reqs) != 1 || attr(reqs[0], "filename") != "report.txt" || attr(reqs[0], "size") != "320000" || !strings.HasPrefix(attr(reqs[0], "content-type"), "text/plain") {
		t.Errorf("slot requests %v", reqs)
	}
	// The file's message, then the caption.
	want := hs.URL + "/get/report.txt"
	if sent.URL.String() != want || sent.File == nil || sent.Caption == nil {
		t.Fatalf("Sent %+v", sent)
	}
	if len(rec.msgs) != 2 || rec.msgs[0].Body != want || rec.msgs[1].Body != "nightly report" || rec.oob[1] != "" {
		t.Fatalf("messages %+v", rec.msgs)
	}
	if oob := rec.oob[0]; oob != `<x xmlns="jabber:x:oob"><url>`+want+`</url></x>` {
		t.Errorf("out-of-band payload %s", oob)
	}
}

func TestTooLargeBeforeAnyUpload(t *testing.T) {
	hs := newUploadServer(t, false)
	svc := &scriptedService{t: t, reply: slotFor(hs.URL)}
	u := testUploader(svc, Config{AllowPlaintext: true}, 1000)
	rec := &recordingSend{}
	_, err := u.SendVia(t.Context(), File{Name: "big.bin", Size: 1001, Body: strings.NewReader(strings.Repeat("x", 1001))}, rec.send)
	var tl *TooLargeError
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &tl) || tl.Max != 1000 || tl.Size != 1001 {
		t.Fatalf("err = %v, want a *TooLargeError 1001 > 1000", err)
	}
	if n := len(svc.slotRequests()); n != 0 || hs.requests() != 0 || rec.count() != 0 {
		t.Fatalf("slot requests %d, PUTs %d, messages %d; want none", n, hs.requests(), rec.count())
	}
}

func TestSlotRefused(t *testing.T) {
	const ns = `xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'`
	for _, tc := range []struct {
		name, reply string
		is          []error
		cond        xstanza.Condition
		max         int64
		retry       bool
	}{{
		name: "file-too-large",
		reply: `error:<error type='modify'><not-acceptable ` + ns + `/><text ` + ns + `>File too large</text>
			<file-too-large xmlns='urn:xmpp:http:upload:0'><max-file-size>20000</max-file-size></file-too-large></error>`,
		is: []error{ErrTooLarge}, cond: xstanza.NotAcceptable, max: 20000,
	}, {
		name: "quota",
		reply: `error:<error type='wait'><resource-constraint ` + ns + `/><text ` + ns + `>Quota reached</text>
			<retry xmlns='urn:xmpp:http:upload:0' stamp='2026-12-07T00:00:00Z'/></error>`,
		is: []error{stanza.ErrNotAvailable}, cond: xstanza.ResourceConstraint, retry: true,
	}, {
		name:  "not-allowed",
		reply: `error:<error type='cancel'><not-allowed ` + ns + `/><text ` + ns + `>Only employees</text></error>`,
		is:    []error{stanza.ErrPermissionDenied}, cond: xstanza.NotAllowed,
	}, {
		name:  "forbidden",
		reply: `error:<error type='auth'><forbidden ` + ns + `/></error>`,
		is:    []error{stanza.ErrPermissionDenied}, cond: xstanza.Forbidden,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newUploadServer(t, false)
			svc := &scriptedService{t: t, reply: func(jid.JID, xml.StartElement) string { return tc.reply }}
			u := testUploader(svc, Config{AllowPlaintext: true}, 0)
			rec := &recordingSend{}
			_, err := u.SendVia(t.Context(), File{Name: "a.bin", Size: 3, Body: strings.NewReader("abc")}, rec.send)
			var se *SlotError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SlotError", err)
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, does not match %v", err, want)
				}
			}
			if !errors.Is(err, xstanza.Error{Condition: tc.cond}) {
				t.Errorf("err = %v, does not match condition %s", err, tc.cond)
			}
			if tc.cond != xstanza.NotAcceptable && errors.Is(err, ErrTooLarge) {
				t.Errorf("err = %v matches ErrTooLarge", err)
			}
			if se.MaxSize != tc.max || se.RetryAt.IsZero() == tc.retry {
				t.Errorf("MaxSize %d RetryAt %v; want %d, retry %v", se.MaxSize, se.RetryAt, tc.max, tc.retry)
			}
			if hs.requests() != 0 || rec.count() != 0 {
				t.Errorf("PUTs %d, messages %d; want none", hs.requests(), rec.count())
			}
		})
	}
}

// TestPutFaults: whatever goes wrong with the PUT, no message is sent.
func TestPutFaults(t *testing.T) {
	content := bytes.Repeat([]byte{'z'}, 1<<20)
	other := newUploadServer(t, false) // a host the service did not name
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter, r *http.Request) bool
		body    func(ctx context.Context, cancel context.CancelFunc) io.Reader
		size    int64
		check   func(t *testing.T, err error)
	}{{
		name: "403",
		handler: func(w http.ResponseWriter, r *http.Request) bool {
			io.Copy(io.Discard, r.Body)
			http.Error(w, "token expired", http.StatusForbidden)
			return true
		},
		check: func(t *testing.T, err error) {
			var he *HTTPError
			if !errors.As(err, &he) || he.StatusCode != 403 || !strings.Contains(he.Body, "token expired") {
				t.Errorf("err = %v, want an *HTTPError 403", err)
			}
		},
	}, {
		name: "500 before reading",
		handler: func(w http.ResponseWriter, r *http.Request) bool {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		},
		check: func(t *testing.T, err error) {
			var he *HTTPError
			if !errors.As(err, &he) && err == nil {
				t.Errorf("err = %v, want an error", err)
			}
		},
	}, {
		name: "redirect to another host",
		handler: func(w http.ResponseWriter, r *http.Request) bool {
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusFound)
			return true
		},
		check: func(t *testing.T, err error) {
			if !errors.Is(err, ErrRedirect) {
				t.Errorf("err = %v, want ErrRedirect", err)
			}
		},
	}, {
		name: "307 redirect",
		handler: func(w http.ResponseWriter, r *http.Request) bool {
			http.Redirect(w, r, other.URL+"/elsewhere", http.StatusTemporaryRedirect)
			return true
		},
		check: func(t *testing.T, err error) {
			if !errors.Is(err, ErrRedirect) {
				t.Errorf("err = %v, want ErrRedirect", err)
			}
		},
	}, {
		name: "connection cut mid-upload",
		handler: func(w http.ResponseWriter, r *http.Request) bool {
			io.CopyN(io.Discard, r.Body, 64<<10)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return true
		},
		check: func(t *testing.T, err error) {
			if err == nil {
				t.Error("no error")
			}
		},
	}, {
		name: "context cancelled mid-upload",
		body: func(ctx context.Context, cancel context.CancelFunc) io.Reader {
			return &cancelAfter{r: bytes.NewReader(content), after: 256 << 10, cancel: cancel}
		},
		check: func(t *testing.T, err error) {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		},
	}, {
		name: "body shorter than Size",
		size: int64(len(content)) + 1,
		check: func(t *testing.T, err error) {
			if !errors.Is(err, ErrSize) {
				t.Errorf("err = %v, want ErrSize", err)
			}
		},
	}, {
		name: "body longer than Size",
		size: int64(len(content)) - 1,
		check: func(t *testing.T, err error) {
			if !errors.Is(err, ErrSize) {
				t.Errorf("err = %v, want ErrSize", err)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newUploadServer(t, false)
			hs.handler = tc.handler
			svc := &scriptedService{t: t, reply: slotFor(hs.URL)}
			u := testUploader(svc, Config{AllowPlaintext: true}, 0)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var body io.Reader = bytes.NewReader(content)
			if tc.body != nil {
				body = tc.body(ctx, cancel)
			}
			size := tc.size
			if size == 0 {
				size = int64(len(content))
			}
			rec := &recordingSend{}
			sent, err := u.SendVia(ctx, File{Name: "f.bin", Size: size, Body: body}, rec.send)
			tc.check(t, err)
			if sent != nil || rec.count() != 0 {
				t.Errorf("Sent %v, %d messages; want none", sent, rec.count())
			}
			if other.requests() != 0 {
				t.Errorf("the other host got %d requests", other.requests())
			}
		})
	}
}

// cancelAfter cancels a context once after bytes were read.
type cancelAfter struct {
	r      io.Reader
	n      int
	after  int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n >= c.after && c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
	return n, err
}

func TestPlaintextRefused(t *testing.T) {
	hs := newUploadServer(t, false)
	svc := &scriptedService{t: t, reply: slotFor(hs.URL)}
	u := testUploader(svc, Config{}, 0)
	rec := &recordingSend{}
	_, err := u.SendVia(t.Context(), File{Name: "a.txt", Size: 3, Body: strings.NewReader("abc")}, rec.send)
	if !errors.Is(err, ErrPlaintext) {
		t.Fatalf("err = %v, want ErrPlaintext", err)
	}
	if hs.requests() != 0 || rec.count() != 0 {
		t.Fatalf("PUTs %d, messages %d; want none", hs.requests(), rec.count())
	}
	// An https put URL with an http get URL is refused too: the URL shared
	// with the recipient would be plaintext.
	svc.reply = func(jid.JID, xml.StartElement) string {
		return `<slot xmlns='urn:xmpp:http:upload:0'><put url='https://127.0.0.1:1/p'/><get url='` + hs.URL + `/g'/></slot>`
	}
	if _, err = u.SendVia(t.Context(), File{Name: "a.txt", Size: 3, Body: strings.NewReader("abc")}, rec.send); !errors.Is(err, ErrPlaintext) {
		t.Fatalf("err = %v, want ErrPlaintext", err)
	}
	// Other schemes, and a slot without URLs.
	svc.reply = func(jid.JID, xml.StartElement) string {
		return `<slot xmlns='urn:xmpp:http:upload:0'><put url='ftp://127.0.0.1/p'/><get url='https://127.0.0.1/g'/></slot>`
	}
	if _, err = u.SendVia(t.Context(), File{Name: "a.txt", Size: 3, Body: strings.NewReader("abc")}, rec.send); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("err = %v, want ErrBadSlot", err)
	}
	svc.reply = func(jid.JID, xml.StartElement) string { return `<slot xmlns='urn:xmpp:http:upload:0'/>` }
	if _, err = u.SendVia(t.Context(), File{Name: "a.txt", Size: 3, Body: strings.NewReader("abc")}, rec.send); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("err = %v, want ErrBadSlot", err)
	}
	if rec.count() != 0 {
		t.Fatalf("%d messages sent", rec.count())
	}
}

func TestHTTPSVerified(t *testing.T) {
	hs := newUploadServer(t, true)
	svc := &scriptedService{t: t, reply: slotFor(hs.URL)}
	pool := x509.NewCertPool()
	pool.AddCert(hs.Certificate())

	// Not trusted: the system roots do not know the test certificate.
	rec := &recordingSend{}
	u := testUploader(svc, Config{}, 0)
	_, err := u.SendVia(t.Context(), File{Name: "a.txt", Size: 3, Body: strings.NewReader("abc")}, rec.send)
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &cv) {
		t.Fatalf("err = %v, want a certificate verification error", err)
	}
	if hs.requests() != 0 || rec.count() != 0 {
		t.Fatalf("PUTs %d, messages %d; want none", hs.requests(), rec.count())
	}

	// Trusted as the XMPP connection's configuration says, whose ServerName
	// (the account's domain) is not the upload host's.
	u = testUploader(svc, Config{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "example.org"}}, 0)
	if _, err = u.SendVia(t.Context(), File{Name: "a.txt", Size: 3, Body: strings.NewReader("abc")}, rec.send); err != nil {
		t.Fatal(err)
	}
	if string(hs.body) != "abc" || rec.count() != 1 {
		t.Fatalf("server got %q, %d messages", hs.body, rec.count())
	}
}

func TestBadNames(t *testing.T) {
	long := strings.Repeat("é", 600) + ".tar.gz" // 1,207 bytes
	for _, tc := range []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\bot\shot.png`, "shot.png"},
		{"a\x00b\nc\x1b[31m.txt", "abc[31m.txt"},
		{"evil\u202egpj.exe", "evilgpj.exe"},
		{"bad\xffutf8.txt", "badutf8.txt"},
		{"  spaced name.txt \t", "spaced name.txt"},
		{long, strings.Repeat("é", 98) + ".gz"},
		{strings.Repeat("x", 1000), strings.Repeat("x", MaxNameLen)},
		{"", ""}, {"dir/", ""}, {"..", ""}, {"a/..", ""}, {"\x01\x02", ""}, {"\u200b", ""},
	} {
		got, err := cleanName(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrBadName) {
				t.Errorf("cleanName(%q) = %q, %v; want ErrBadName", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want || len(got) > MaxNameLen {
			t.Errorf("cleanName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	// Through Upload: refused before anything is asked.
	svc := &scriptedService{t: t, reply: slotFor("http://127.0.0.1:1")}
	u := testUploader(svc, Config{AllowPlaintext: true}, 0)
	if _, err := u.Upload(t.Context(), File{Name: "../", Size: 1, Body: strings.NewReader("x")}); !errors.Is(err, ErrBadName) {
		t.Fatalf("Upload: %v, want ErrBadName", err)
	}
	if len(svc.slotRequests()) != 0 {
		t.Fatal("a slot was asked for")
	}
}
