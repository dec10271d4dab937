package gateway_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/gateway"
)

// verify checks a gateway webhook request the Standard Webhooks way and
// returns its body. key is the secret's key: the base64 after "whsec_".
func verify(key []byte, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return nil, fmt.Errorf("stale or missing webhook-timestamp %q", ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	// The header may hold several space-separated signatures (key rotation).
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return body, nil
		}
	}
	return nil, fmt.Errorf("no valid signature")
}

// A webhook receiver that verifies each request before trusting it.
func Example_webhookReceiver() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))

	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := verify(key, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p gateway.WebhookPayload
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// webhook-id is the same on every retry: use it to drop duplicates.
		fmt.Println(r.Header.Get("webhook-id"), p.Data.ID, p.Data.State)
	})
	srv := httptest.NewServer(receiver)
	defer srv.Close()

	// What the gateway sends (see gateway.Sign).
	body := []byte(`{"type":"message.state","timestamp":"2026-01-02T15:04:05Z","data":{"id":"H8B8t5hOkaGFjzUi","to":"bob@example.org","state":"SEEN_BY_RECIPIENT","at":"2026-01-02T15:04:05Z","cursor":"42"}}`)
	ts := time.Now().Unix()
	req, _ := http.NewRequest("POST", srv.URL, bytes.NewReader(body))
	req.Header.Set("webhook-id", "evt_42")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", gateway.Sign(secret, "evt_42", ts, body))
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()

	// A forged request is refused.
	req, _ = http.NewRequest("POST", srv.URL, bytes.NewReader(body))
	req.Header.Set("webhook-id", "evt_42")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", "v1,Zm9yZ2Vk")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// evt_42 H8B8t5hOkaGFjzUi SEEN_BY_RECIPIENT
	// 401
}

// Embedding the gateway in a Go server: one account, its state changes
// routed to the gateway, the API served on loopback.
func ExampleNew() {
	ctx := context.Background()
	g, err := gateway.New(gateway.Config{Tokens: []string{os.Getenv("GATEWAY_TOKEN")}})
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	account := jid.MustParse("alerts@example.org")
	c, err := xmpptrack.Dial(ctx, account, os.Getenv("XMPP_PASSWORD"), &xmpptrack.Config{OnStateChange: g.OnStateChange})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := g.AddAccount(gateway.Account{JID: account, Client: c, Nick: "alerts"}); err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", g))
}
