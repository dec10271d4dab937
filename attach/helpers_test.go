package attach

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// scriptedService answers IQs as an XMPP server and upload service would,
// from canned replies.
type scriptedService struct {
	t *testing.T
	// reply returns the payload of a result, or an <error/> element
	// prefixed with "error:", for a request.
	reply func(to jid.JID, req xml.StartElement) string

	mu    sync.Mutex
	slots []xml.StartElement // slot requests seen
}

func (s *scriptedService) query(ctx context.Context, to jid.JID, payload xml.TokenReader, v any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tok, err := payload.Token()
	if err != nil {
		s.t.Fatalf("reading the request: %v", err)
	}
	req := tok.(xml.StartElement).Copy()
	if _, err := xmlstream.Copy(xmlstream.Discard(), payload); err != nil {
		s.t.Fatal(err)
	}
	if req.Name.Local == "request" {
		s.mu.Lock()
		s.slots = append(s.slots, req)
		s.mu.Unlock()
	}
	out := s.reply(to, req)
	typ := "result"
	if rest, ok := strings.CutPrefix(out, "error:"); ok {
		typ, out = "error", rest
	}
	return decodeReply(xstanza.IQType(typ), xml.NewDecoder(strings.NewReader(out)), v)
}

func (s *scriptedService) slotRequests() []xml.StartElement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]xml.StartElement(nil), s.slots...)
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// slotFor returns a slot reply with put and get URLs under base.
func slotFor(base string, headers ...string) func(jid.JID, xml.StartElement) string {
	return func(_ jid.JID, req xml.StartElement) string {
		name := attr(req, "filename")
		var hs strings.Builder
		for i := 0; i+1 < len(headers); i += 2 {
			fmt.Fprintf(&hs, "<header name='%s'>%s</header>", headers[i], headers[i+1])
		}
		return fmt.Sprintf(`<slot xmlns='urn:xmpp:http:upload:0'><put url='%s/put/%s'>%s</put><get url='%s/get/%s'/></slot>`,
			base, name, hs.String(), base, name)
	}
}

// recordingSend is a SendFunc that records messages instead of sending them.
type recordingSend struct {
	mu   sync.Mutex
	msgs []xmpptrack.Message
	oob  []string // the serialized payloads
}

func (r *recordingSend) send(_ context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
	var b strings.Builder
	if m.Payload != nil {
		e := xml.NewEncoder(&b)
		if _, err := xmlstream.Copy(e, m.Payload); err != nil {
			return nil, err
		}
		e.Flush()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	r.oob = append(r.oob, b.String())
	return tracking.NewMessageTracker(fmt.Sprint("m", len(r.msgs))), nil
}

func (r *recordingSend) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// uploadServer is an HTTP upload endpoint that records what it got.
type uploadServer struct {
	*httptest.Server
	mu      sync.Mutex
	puts    int
	body    []byte
	headers http.Header
	handler func(w http.ResponseWriter, r *http.Request) bool // true: handled
}

func newUploadServer(t *testing.T, tlsOn bool) *uploadServer {
	u := &uploadServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.puts++
		u.headers = r.Header.Clone()
		h := u.handler
		u.mu.Unlock()
		if h != nil && h(w, r) {
			return
		}
		if r.Method != http.MethodPut {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		u.mu.Lock()
		u.body = b
		u.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	})
	u.Server = httptest.NewUnstartedServer(h)
	// The refused handshakes of the certificate test are expected.
	u.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsOn {
		u.StartTLS()
	} else {
		u.Start()
	}
	t.Cleanup(u.Close)
	return u
}

func (u *uploadServer) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.puts
}

// testUploader returns an Uploader whose IQs go to svc and whose service is
// known, as after discovery.
func testUploader(svc *scriptedService, cfg Config, max int64) *Uploader {
	u := &Uploader{cfg: cfg, query: svc.query, log: slog.New(slog.DiscardHandler)}
	u.http = newHTTPClient(&u.cfg)
	u.service = &Service{JID: jid.MustParse("upload.example.org"), MaxSize: max}
	return u
}
