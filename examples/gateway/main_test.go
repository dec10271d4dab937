package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/interop"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

const token = "e2e-token"

// hookSink is a webhook receiver that verifies signatures.
type hookSink struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	events []map[string]any
	ch     chan struct{}
}

func (h *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mac := hmac.New(sha256.New, h.secret)
	fmt.Fprintf(mac, "%s.%s.%s", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body)
	if r.Header.Get("webhook-signature") != "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		h.t.Errorf("webhook signature does not verify")
		w.WriteHeader(400)
		return
	}
	var p struct {
		Data map[string]any `json:"data"`
	}
	json.Unmarshal(body, &p)
	h.mu.Lock()
	h.events = append(h.events, p.Data)
	h.mu.Unlock()
	select {
	case h.ch <- struct{}{}:
	default:
	}
}

// states returns the states the webhook got for message id, in order.
func (h *hookSink) states(id string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		if e["id"] == id {
			out = append(out, e["state"].(string))
		}
	}
	return out
}

// running is a gateway started with run().
type running struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

var readyLine = regexp.MustCompile(`^xmpptrack gateway ready on (https?://\S+) \(accounts: (.*)\)$`)

// start runs the program with args and waits for its ready line.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &lockedBuf{}
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := run(ctx, args, pw, stderr)
		pw.CloseWithError(fmt.Errorf("run returned %v", err))
		r.done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no ready line: %v\n%s", err, stderr.String())
	}
	m := readyLine.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		t.Fatalf("ready line %q", line)
	}
	go io.Copy(io.Discard, pr)
	r.url = m[1]
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("gateway log:\n%s", stderr.String())
		}
	})
	return r
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("gateway: %v", err)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// call sends a request to the gateway and decodes the JSON answer.
func (r *running) call(t *testing.T, method, path, body string, out any, hdr ...string) int {
	t.Helper()
	req, _ := http.NewRequest(method, r.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

type sent struct {
	ID, State, Cursor string
	Reached           *bool
}

type status struct {
	ID, To, State, Cursor string
	Settled               bool
	History               []struct{ State, At, From string }
}

func TestEndToEnd(t *testing.T) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) { endToEnd(t, kind) })
	}
}

func endToEnd(t *testing.T, kind testserver.Kind) {
	srv := testserver.Start(t, kind, testserver.Options{Accounts: []string{"gw", "bob"}})
	room := "ops@" + srv.MUCDomain()
	bob := interop.StartSlixmpp(t, interop.Options{Addr: srv.Addr(), JID: srv.JID("bob").String(),
		Password: srv.Password("bob"), CertPEM: srv.CertPEM(), Room: room, Nick: "bobby", RoomMarkers: true})
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hook := &hookSink{t: t, secret: []byte("hook-secret"), ch: make(chan struct{}, 1)}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	args := []string{"-listen", "127.0.0.1:0", "-jid", srv.JID("gw").String(), "-addr", srv.Addr(), "-insecure",
		"-password-file", write("pw", srv.Password("gw")+"\n"), "-token-file", write("tokens", "# tokens\n"+token+"\n"),
		"-store", filepath.Join(dir, "gw.db"), "-webhook", hookSrv.URL, "-webhook-secret-file", write("hook", "hook-secret")}
	g := start(t, args...)
	to := srv.JID("bob").String()

	// Send and wait until seen: the slixmpp peer answers with a receipt and
	// a displayed marker.
	var s sent
	if code := g.call(t, "POST", "/v1/messages", `{"to":"`+to+`","body":"hello from the gateway","wait":"seen","wait_timeout":"20s","channel":"e2e"}`, &s); code != 200 || s.State != "SEEN_BY_RECIPIENT" {
		t.Fatalf("send: %d %+v", code, s)
	}
	var st status
	g.call(t, "GET", "/v1/messages/"+s.ID, "", &st)
	var hist []string
	for _, h := range st.History {
		hist = append(hist, h.State)
	}
	// The ack may come after the receipt: DELIVERED_TO_SERVER is then
	// passed over.
	got := strings.Join(hist, " ")
	if got != "IN_TRANSIT DELIVERED_TO_SERVER DELIVERED_TO_RECIPIENT SEEN_BY_RECIPIENT" &&
		got != "IN_TRANSIT DELIVERED_TO_RECIPIENT SEEN_BY_RECIPIENT" || !st.Settled {
		t.Fatalf("history %s, settled %v", got, st.Settled)
	}
	if from := st.History[len(st.History)-2].From; !strings.HasPrefix(from, to+"/") {
		t.Errorf("receipt from %q", from)
	}

	// The feed has the same changes, in order, with cursors.
	var feed struct {
		Events []struct{ ID, State, Cursor string }
		Cursor string
	}
	g.call(t, "GET", "/v1/events?after=0&channels=e2e", "", &feed)
	var fs []string
	for _, e := range feed.Events {
		if e.ID == s.ID {
			fs = append(fs, e.State)
		}
	}
	if strings.Join(fs, " ") != strings.Join(hist, " ") {
		t.Fatalf("feed %v, history %v", fs, hist)
	}

	// The webhook got them all, signed, in order.
	deadline := time.After(20 * time.Second)
	for len(hook.states(s.ID)) < len(hist) {
		select {
		case <-hook.ch:
		case <-deadline:
			t.Fatalf("webhook got %v", hook.states(s.ID))
		}
	}
	if got := strings.Join(hook.states(s.ID), " "); got != strings.Join(hist, " ") {
		t.Fatalf("webhook %s", got)
	}

	// An idempotent retry sends nothing.
	body := `{"to":"` + to + `","body":"exactly once","wait":"delivered","wait_timeout":"20s"}`
	var a, b sent
	g.call(t, "POST", "/v1/messages", body, &a, "Idempotency-Key", "retry-1")
	g.call(t, "POST", "/v1/messages", body, &b, "Idempotency-Key", "retry-1")
	if a.ID == "" || a.ID != b.ID || b.Reached == nil || !*b.Reached {
		t.Fatalf("retry: %+v then %+v", a, b)
	}

	// A notification, and the test route.
	var n sent
	if code := g.call(t, "POST", "/v1/notify", `{"to":"`+to+`","title":"Disk full","body":"95% on /var","priority":2}`, &n); code != 202 {
		t.Fatalf("notify: %d", code)
	}
	var tr struct{ ID, State, Elapsed string }
	if code := g.call(t, "POST", "/v1/test", `{"to":"`+to+`","timeout":"20s"}`, &tr); code != 200 || (tr.State != "DELIVERED_TO_RECIPIENT" && tr.State != "SEEN_BY_RECIPIENT") {
		t.Fatalf("test: %d %+v", code, tr)
	}

	// A scheduled message is cancelled before it is sent.
	var sch sent
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	g.call(t, "POST", "/v1/messages", `{"to":"`+to+`","body":"never","send_at":"`+at+`"}`, &sch)
	var c sent
	if code := g.call(t, "DELETE", "/v1/messages/"+sch.ID, "", &c); code != 200 || c.State != "CLOSED" {
		t.Fatalf("cancel: %d %+v", code, c)
	}

	// The recipient got each message once, and the notification's body.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := bob.WaitEvent(ctx, func(e interop.Event) bool { return e.Kind == "message" && e.Body == "95% on /var" }); err != nil {
		t.Fatalf("notification not received: %v", err)
	}
	count := map[string]int{}
	for _, e := range bob.Events() {
		if e.Kind == "message" {
			count[e.Body]++
		}
	}
	if count["hello from the gateway"] != 1 || count["exactly once"] != 1 || count["never"] != 0 {
		t.Fatalf("received %v", count)
	}

	// Group chat: the gateway joins the room as "gw"; the room's reflection
	// is DELIVERED_TO_RECIPIENT and bob's marker SEEN_BY_RECIPIENT.
	var gc sent
	if code := g.call(t, "POST", "/v1/messages", `{"to":"`+room+`","type":"groupchat","body":"to the room","wait":"seen","wait_timeout":"20s"}`, &gc); code != 200 {
		t.Fatalf("group chat: %d %+v", code, gc)
	}
	var gst struct {
		Type, State string
		History     []struct {
			State  string
			SeenBy []string `json:"seen_by"`
		}
	}
	g.call(t, "GET", "/v1/messages/"+gc.ID, "", &gst)
	last := gst.History[len(gst.History)-1]
	if gst.Type != "groupchat" || last.State != "SEEN_BY_RECIPIENT" || strings.Join(last.SeenBy, ",") != "bobby" {
		t.Fatalf("group chat status %+v", gst)
	}

	// Health and readiness.
	var ready struct{ Status string }
	if code := g.call(t, "GET", "/readyz", "", &ready); code != 200 || ready.Status != "ready" {
		t.Fatalf("readyz: %d %+v", code, ready)
	}

	// A message scheduled before a restart is sent after it; the record
	// and the idempotency keys survive the restart.
	soon := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
	var later sent
	g.call(t, "POST", "/v1/messages", `{"to":"`+to+`","body":"scheduled across a restart","send_at":"`+soon+`"}`, &later)
	g.stop(t)
	g = start(t, args...)
	var again sent
	g.call(t, "POST", "/v1/messages", body, &again, "Idempotency-Key", "retry-1")
	if again.ID != a.ID {
		t.Fatalf("retry after restart: %+v, first %+v", again, a)
	}
	if _, err := bob.WaitEvent(ctx, func(e interop.Event) bool { return e.Kind == "message" && e.Body == "scheduled across a restart" }); err != nil {
		t.Fatalf("scheduled message not received after the restart: %v", err)
	}
	// Its tracking goes on in the new process: wait for the receipt.
	for i := 0; ; i++ {
		var st status
		g.call(t, "GET", "/v1/messages/"+later.ID, "", &st)
		if st.State == "DELIVERED_TO_RECIPIENT" || st.State == "SEEN_BY_RECIPIENT" {
			break
		}
		var ev struct{ Cursor string }
		if code := g.call(t, "GET", "/v1/events?wait=10s", "", &ev); code != 200 || i > 20 {
			t.Fatalf("scheduled message is %s", st.State)
		}
	}
	if code := g.call(t, "GET", "/v1/messages/"+s.ID, "", &st); code != 200 || st.State != "SEEN_BY_RECIPIENT" {
		t.Fatalf("status after restart: %d %+v", code, st)
	}
}

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "t")
	os.WriteFile(tokens, []byte(token), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-jid", "a@b"}, "-token-file is required"},
		{[]string{"-token-file", tokens}, "give -jid or -config"},
		{[]string{"-token-file", tokens, "-jid", "a@b", "-listen", "0.0.0.0:8080"}, "not a loopback address"},
		{[]string{"-token-file", tokens, "-jid", "a@b", "-listen", ":8080"}, "not a loopback address"},
		{[]string{"-token-file", tokens, "-jid", "a@b", "-tls-cert", "x"}, "go together"},
		{[]string{"-token-file", tokens, "-jid", "a@b", "extra"}, "unexpected argument"},
	} {
		_, err := parseFlags(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := parseFlags([]string{"-token-file", tokens, "-jid", "a@b", "-listen", "0.0.0.0:8080", "-insecure-http"}, io.Discard); err != nil {
		t.Errorf("-insecure-http: %v", err)
	}
	if _, err := parseFlags([]string{"-token-file", tokens, "-jid", "a@b", "-listen", "[::1]:8080"}, io.Discard); err != nil {
		t.Errorf("[::1]: %v", err)
	}
}

// TestTwoInstances runs two gateways for one account on one PostgreSQL
// store: a message sent through one is read and followed through the other,
// the feed is the same from both, and an idempotency key holds across them.
func TestTwoInstances(t *testing.T) {
	pg := testserver.StartPostgres(t, testserver.PostgresOptions{NoFsync: true})
	dsn, err := pg.CreateDatabase(context.Background(), "gw")
	if err != nil {
		t.Fatal(err)
	}
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"gw", "bob"}})
	interop.StartSlixmpp(t, interop.Options{Addr: srv.Addr(), JID: srv.JID("bob").String(),
		Password: srv.Password("bob"), CertPEM: srv.CertPEM()})
	dir := t.TempDir()
	pw, tokens := filepath.Join(dir, "pw"), filepath.Join(dir, "tokens")
	os.WriteFile(pw, []byte(srv.Password("gw")), 0o600)
	os.WriteFile(tokens, []byte(token), 0o600)
	args := []string{"-listen", "127.0.0.1:0", "-jid", srv.JID("gw").String(), "-addr", srv.Addr(), "-insecure",
		"-password-file", pw, "-token-file", tokens, "-store", dsn}
	a, b := start(t, append(args, "-resource", "a")...), start(t, append(args, "-resource", "b")...)
	to := srv.JID("bob").String()

	var s sent
	body := `{"to":"` + to + `","body":"through A","wait":"seen","wait_timeout":"20s"}`
	if code := a.call(t, "POST", "/v1/messages", body, &s, "Idempotency-Key", "k"); code != 200 {
		t.Fatalf("send through A: %d %+v", code, s)
	}
	var sb sent
	b.call(t, "POST", "/v1/messages", body, &sb, "Idempotency-Key", "k")
	if sb.ID != s.ID {
		t.Fatalf("the key sent again through B: %s, first %s", sb.ID, s.ID)
	}
	var sa, stb status
	a.call(t, "GET", "/v1/messages/"+s.ID, "", &sa)
	b.call(t, "GET", "/v1/messages/"+s.ID, "", &stb)
	ja, _ := json.Marshal(sa)
	jb, _ := json.Marshal(stb)
	if string(ja) != string(jb) || stb.State != "SEEN_BY_RECIPIENT" {
		t.Fatalf("A says %s\nB says %s", ja, jb)
	}
	// One through B, followed through A's feed.
	var s2 sent
	if code := b.call(t, "POST", "/v1/messages", `{"to":"`+to+`","body":"through B","wait":"seen","wait_timeout":"20s"}`, &s2); code != 200 {
		t.Fatalf("send through B: %d", code)
	}
	var fa, fb json.RawMessage
	a.call(t, "GET", "/v1/events?after=0&limit=1000&wait=0s", "", &fa)
	b.call(t, "GET", "/v1/events?after=0&limit=1000&wait=0s", "", &fb)
	if string(fa) != string(fb) || !strings.Contains(string(fa), s2.ID) {
		t.Fatalf("feeds differ:\nA %s\nB %s", fa, fb)
	}
}

// TestConfigFile runs two accounts from a -config file (password from a
// file and from the environment) and a webhook from it; "from" picks the
// account.
func TestConfigFile(t *testing.T) {
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"alerts", "ci", "bob"}})
	interop.StartSlixmpp(t, interop.Options{Addr: srv.Addr(), JID: srv.JID("bob").String(),
		Password: srv.Password("bob"), CertPEM: srv.CertPEM()})
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	hook := &hookSink{t: t, secret: []byte("s3"), ch: make(chan struct{}, 1)}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	t.Setenv("CI_XMPP_PASSWORD", srv.Password("ci"))
	cfg := fmt.Sprintf(`{
  "accounts": [
    {"jid": %q, "password_file": %q, "addr": %q, "insecure": true, "nick": "alerts"},
    {"jid": %q, "password_env": "CI_XMPP_PASSWORD", "addr": %q, "insecure": true}
  ],
  "webhooks": [{"url": %q, "secret_file": %q, "channels": ["ci"]}]
}`, srv.JID("alerts"), write("pw", srv.Password("alerts")), srv.Addr(), srv.JID("ci"), srv.Addr(), hookSrv.URL, write("hook", "s3"))
	g := start(t, "-listen", "127.0.0.1:0", "-config", write("gw.json", cfg), "-token-file", write("tokens", token), "-store", "memory")
	to := srv.JID("bob").String()
	for _, from := range []string{"", srv.JID("ci").String()} {
		var s sent
		if code := g.call(t, "POST", "/v1/messages", `{"to":"`+to+`","from":"`+from+`","body":"hi","channel":"ci","wait":"delivered","wait_timeout":"20s"}`, &s); code != 200 {
			t.Fatalf("from %q: %d %+v", from, code, s)
		}
		var st struct{ From string }
		g.call(t, "GET", "/v1/messages/"+s.ID, "", &st)
		want := srv.JID("alerts").String()
		if from != "" {
			want = from
		}
		if st.From != want {
			t.Errorf("sent from %s, want %s", st.From, want)
		}
		deadline := time.After(20 * time.Second)
		for len(hook.states(s.ID)) == 0 {
			select {
			case <-hook.ch:
			case <-deadline:
				t.Fatalf("webhook got nothing for %s", s.ID)
			}
		}
	}
	var p struct{ Type string }
	if code := g.call(t, "POST", "/v1/messages", `{"to":"`+to+`","from":"nobody@localhost","body":"hi"}`, &p); code != 422 || !strings.HasSuffix(p.Type, "unknown-account") {
		t.Fatalf("unknown account: %d %+v", code, p)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []struct{ json, want string }{
		{`{"accounts":[{"jid":"a@b","password":"inline"}]}`, "unknown field"},
		{`{"accounts":[{"jid":"a@b"}]}`, "give a file or an environment variable"},
		{`{"accounts":[{"jid":"b","password_env":"HOME"}]}`, "not an account address"},
		{`{"accounts":[{"jid":"a@b","password_env":"XMPPTRACK_UNSET_VARIABLE"}]}`, "is empty"},
		{`{"accounts":`, "unexpected EOF"},
	} {
		p := filepath.Join(dir, fmt.Sprint(i))
		os.WriteFile(p, []byte(c.json), 0o600)
		if _, err := loadConfig(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
}

// TestServeTLS serves HTTPS with -tls-cert and -tls-key.
func TestServeTLS(t *testing.T) {
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"gw"}})
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(token), 0o600)
	t.Setenv("XMPP_PASSWORD", srv.Password("gw"))
	g := start(t, "-listen", "127.0.0.1:0", "-jid", srv.JID("gw").String(), "-addr", srv.Addr(), "-insecure",
		"-token-file", tokens, "-store", "memory", "-tls-cert", certFile, "-tls-key", keyFile)
	if !strings.HasPrefix(g.url, "https://") {
		t.Fatalf("ready on %s", g.url)
	}
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", g.url+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("readyz over TLS: %d", resp.StatusCode)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestTrackingAcrossRestart: a message sent before a restart, to a
// recipient who is offline then, is followed after it: its client recorded
// it in the gateway's store, the new process takes its tracker back, and the
// receipt and marker that arrive later reach the record. On SQLite and on
// PostgreSQL.
func TestTrackingAcrossRestart(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { trackingAcrossRestart(t, filepath.Join(t.TempDir(), "gw.db")) })
	t.Run("postgres", func(t *testing.T) {
		pg := testserver.StartPostgres(t, testserver.PostgresOptions{NoFsync: true})
		dsn, err := pg.CreateDatabase(context.Background(), "gw")
		if err != nil {
			t.Fatal(err)
		}
		trackingAcrossRestart(t, dsn)
	})
}

func trackingAcrossRestart(t *testing.T, storeSpec string) {
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"gw", "bob"}})
	dir := t.TempDir()
	pw, tokens := filepath.Join(dir, "pw"), filepath.Join(dir, "tokens")
	os.WriteFile(pw, []byte(srv.Password("gw")), 0o600)
	os.WriteFile(tokens, []byte(token), 0o600)
	args := []string{"-listen", "127.0.0.1:0", "-jid", srv.JID("gw").String(), "-addr", srv.Addr(), "-insecure",
		"-password-file", pw, "-token-file", tokens, "-store", storeSpec}
	to := srv.JID("bob").String()

	g := start(t, args...)
	var s sent
	if code := g.call(t, "POST", "/v1/messages", `{"to":"`+to+`","body":"while you were out","wait":"server","wait_timeout":"20s"}`, &s); code != 200 {
		t.Fatalf("send: %d %+v", code, s)
	}
	g.stop(t)

	g = start(t, args...)
	var st status
	g.call(t, "GET", "/v1/messages/"+s.ID, "", &st)
	if st.State != "DELIVERED_TO_SERVER" || st.Settled {
		t.Fatalf("after the restart, before the recipient is online: %+v", st)
	}
	// Bob comes online and gets the message from offline storage.
	interop.StartSlixmpp(t, interop.Options{Addr: srv.Addr(), JID: to, Password: srv.Password("bob"), CertPEM: srv.CertPEM()})
	deadline := time.Now().Add(30 * time.Second)
	for {
		g.call(t, "GET", "/v1/messages/"+s.ID, "", &st)
		if st.State == "SEEN_BY_RECIPIENT" && st.Settled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the message is %s (settled %v): %+v", st.State, st.Settled, st.History)
		}
		var ev struct{ Cursor string }
		g.call(t, "GET", "/v1/events?wait=5s&after="+st.Cursor, "", &ev)
	}
	var states []string
	for _, h := range st.History {
		states = append(states, h.State)
	}
	if got := strings.Join(states, " "); got != "IN_TRANSIT DELIVERED_TO_SERVER DELIVERED_TO_RECIPIENT SEEN_BY_RECIPIENT" {
		t.Fatalf("history %s", got)
	}
}

// TestWebhookTakeover: two gateways on one PostgreSQL deliver to one
// webhook: one holds the outbox's lease and delivers; when it stops, the
// other takes the deliveries over from the saved cursor. Every change of the
// feed reaches the receiver at least once, signed, and the first delivery of
// each is in feed order per message.
func TestWebhookTakeover(t *testing.T) {
	pg := testserver.StartPostgres(t, testserver.PostgresOptions{NoFsync: true})
	dsn, err := pg.CreateDatabase(context.Background(), "gw")
	if err != nil {
		t.Fatal(err)
	}
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"gw", "bob"}})
	interop.StartSlixmpp(t, interop.Options{Addr: srv.Addr(), JID: srv.JID("bob").String(),
		Password: srv.Password("bob"), CertPEM: srv.CertPEM()})
	sink := &hookSink{t: t, secret: []byte("takeover-secret"), ch: make(chan struct{}, 1)}
	hs := httptest.NewServer(sink)
	defer hs.Close()
	dir := t.TempDir()
	pw, tokens, secret := filepath.Join(dir, "pw"), filepath.Join(dir, "tokens"), filepath.Join(dir, "secret")
	os.WriteFile(pw, []byte(srv.Password("gw")), 0o600)
	os.WriteFile(tokens, []byte(token), 0o600)
	os.WriteFile(secret, sink.secret, 0o600)
	args := []string{"-listen", "127.0.0.1:0", "-jid", srv.JID("gw").String(), "-addr", srv.Addr(), "-insecure",
		"-password-file", pw, "-token-file", tokens, "-store", dsn, "-webhook", hs.URL, "-webhook-secret-file", secret}
	a := start(t, append(args, "-resource", "a")...)
	b := start(t, append(args, "-resource", "b")...)
	to := srv.JID("bob").String()
	send := func(g *running, body, wait string) {
		t.Helper()
		var s sent
		if code := g.call(t, "POST", "/v1/messages", `{"to":"`+to+`","body":"`+body+`","wait":"`+wait+`","wait_timeout":"20s"}`, &s); code/100 != 2 {
			t.Fatalf("send %s: %d %+v", body, code, s)
		}
	}
	for i := range 3 {
		send(a, fmt.Sprint("before ", i), "seen")
		send(b, fmt.Sprint("before, through b ", i), "seen")
	}
	// Which instance delivers?
	waitDelivered(t, a, sink)
	holder, other := a, b
	if deliveries(t, a) == 0 {
		holder, other = b, a
	}
	if deliveries(t, holder) == 0 || deliveries(t, other) != 0 {
		t.Fatalf("deliveries: holder %v, other %v", deliveries(t, holder), deliveries(t, other))
	}
	// Messages still moving when the holder stops, then more after.
	send(holder, "at the stop", "server")
	holder.stop(t)
	for i := range 3 {
		send(other, fmt.Sprint("after ", i), "seen")
	}
	waitDelivered(t, other, sink)
	if deliveries(t, other) == 0 {
		t.Fatal("the other instance delivered nothing")
	}
}

// waitDelivered waits until the sink got every change of g's feed, then
// checks that each message's changes came in feed order (first deliveries;
// a change may come twice).
func waitDelivered(t *testing.T, g *running, sink *hookSink) {
	t.Helper()
	type ev struct{ ID, State, Cursor string }
	deadline := time.Now().Add(90 * time.Second)
	for {
		var feed struct{ Events []ev }
		g.call(t, "GET", "/v1/events?after=0&limit=1000&wait=0s", "", &feed)
		sink.mu.Lock()
		events := slices.Clone(sink.events)
		sink.mu.Unlock()
		got := map[string]bool{}
		var order []ev
		for _, e := range events {
			c, _ := e["cursor"].(string)
			if c == "" {
				t.Fatalf("an event without a cursor: %v", e)
			}
			if !got[c] {
				got[c] = true
				order = append(order, ev{ID: e["id"].(string), State: e["state"].(string), Cursor: c})
			}
		}
		missing := 0
		for _, e := range feed.Events {
			if !got[e.Cursor] {
				missing++
			}
		}
		if missing == 0 {
			// Per message, the first deliveries follow the feed.
			want := map[string][]string{}
			for _, e := range feed.Events {
				want[e.ID] = append(want[e.ID], e.Cursor)
			}
			have := map[string][]string{}
			for _, e := range order {
				have[e.ID] = append(have[e.ID], e.Cursor)
			}
			for id, w := range want {
				if strings.Join(have[id], " ") != strings.Join(w, " ") {
					t.Fatalf("message %s: delivered %v, feed %v", id, have[id], w)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d changes never delivered", missing, len(feed.Events))
		}
		select {
		case <-sink.ch:
		case <-time.After(time.Second):
		}
	}
}

// deliveries reads g's count of webhook deliveries.
func deliveries(t *testing.T, g *running) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", g.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "xmpptrack_gateway_webhook_deliveries_total{") {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			sum += v
		}
	}
	return sum
}
