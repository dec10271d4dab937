package attach_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/oob"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/attach"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// received is a message with an out-of-band URL.
type received struct {
	from jid.JID
	typ  xstanza.MessageType
	body string
	url  string
}

// oobMessages hands each incoming message carrying jabber:x:oob to ch.
func oobMessages(ch chan<- received) xmpp.Handler {
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		msg, err := xstanza.NewMessage(*start)
		if err != nil {
			return nil
		}
		var v struct {
			Body string   `xml:"body"`
			OOB  oob.Data `xml:"jabber:x:oob x"`
		}
		if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t)).Decode(&v); err != nil || v.OOB.URL == "" {
			return nil
		}
		ch <- received{from: msg.From, typ: msg.Type, body: v.Body, url: v.OOB.URL}
		return nil
	})
}

func dial(t *testing.T, srv *testserver.Server, local string, cfg xmpptrack.Config) *xmpptrack.Client {
	t.Helper()
	cfg.Addr = srv.Addr()
	cfg.TLSConfig = srv.TLSConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := xmpptrack.Dial(ctx, srv.JID(local), srv.Password(local), &cfg)
	if err != nil {
		t.Fatalf("Dial %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func download(t *testing.T, url string) [32]byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func randomFile(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestIntegrationSendFile(t *testing.T) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, kind, testserver.Options{
				Accounts: []string{"alice", "bob"}, HTTPUpload: true, UploadLimit: 4 << 20,
			})
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			got := make(chan received, 4)
			alice := dial(t, srv, "alice", xmpptrack.Config{})
			bob := dial(t, srv, "bob", xmpptrack.Config{Handler: oobMessages(got)})
			u := attach.New(alice, &attach.Config{TLSConfig: srv.TLSConfig(), AllowPlaintext: true})

			svc, err := u.Service(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if svc.JID.String() != srv.UploadDomain() || svc.MaxSize != 4<<20 {
				t.Fatalf("service %+v, want %s with the 4 MiB limit", svc, srv.UploadDomain())
			}

			content := randomFile(t, 3<<20+17)
			sent, err := u.Send(ctx, srv.JID("bob"), attach.File{
				Name: "shot.png", Size: int64(len(content)), Body: bytes.NewReader(content), Caption: "the dashboard",
			})
			if err != nil {
				t.Fatal(err)
			}
			if st, err := sent.File.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
				t.Fatalf("file message: %s, %v", st, err)
			}
			if st, err := sent.Caption.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
				t.Fatalf("caption: %s, %v", st, err)
			}
			var m received
			select {
			case m = <-got:
			case <-ctx.Done():
				t.Fatal("bob got no file")
			}
			if m.url != sent.URL.String() || m.body != m.url {
				t.Fatalf("bob got %+v, want body and oob %s", m, sent.URL)
			}
			if download(t, m.url) != sha256.Sum256(content) {
				t.Fatal("the downloaded file differs")
			}
			// Bob reads it: SEEN like any message.
			if !bob.MarkDisplayed(srv.JID("alice")) {
				t.Fatal("MarkDisplayed queued nothing")
			}
			if st, err := sent.File.Wait(ctx, tracking.SeenByRecipient); err != nil {
				t.Fatalf("file message: %s, %v", st, err)
			}

			// Over the limit: refused before any upload.
			big := int64(4<<20 + 1)
			_, err = u.Send(ctx, srv.JID("bob"), attach.File{Name: "big.bin", Size: big, Body: io.LimitReader(rand.Reader, big)})
			var tl *attach.TooLargeError
			if !errors.As(err, &tl) || tl.Max != 4<<20 {
				t.Fatalf("too large: %v", err)
			}
		})
	}
}

func TestIntegrationSendFileToRoom(t *testing.T) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, kind, testserver.Options{Accounts: []string{"alice", "bob"}, HTTPUpload: true})
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			got := make(chan received, 8)
			alice := dial(t, srv, "alice", xmpptrack.Config{})
			bob := dial(t, srv, "bob", xmpptrack.Config{Handler: oobMessages(got)})
			room := jid.MustParse("files@" + srv.MUCDomain())
			rb, err := muc.Join(ctx, bob, jid.MustParse(room.String()+"/bob"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer rb.Leave(context.Background(), "")
			ra, err := muc.Join(ctx, alice, jid.MustParse(room.String()+"/alice"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ra.Leave(context.Background(), "")

			u := attach.New(alice, &attach.Config{AllowPlaintext: true})
			content := randomFile(t, 200<<10)
			sent, err := u.SendVia(ctx, attach.File{Name: "log.txt", Size: int64(len(content)), Body: bytes.NewReader(content)}, ra.SendMessage)
			if err != nil {
				t.Fatal(err)
			}
			// The room's reflection is the proof.
			if st, err := sent.File.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
				t.Fatalf("room message: %s, %v", st, err)
			}
			for {
				var m received
				select {
				case m = <-got:
				case <-ctx.Done():
					t.Fatal("bob got no file in the room")
				}
				if m.typ != xstanza.GroupChatMessage || m.from.Resourcepart() != "alice" {
					continue
				}
				if m.url != sent.URL.String() || m.body != m.url {
					t.Fatalf("bob got %+v, want %s", m, sent.URL)
				}
				break
			}
			if download(t, sent.URL.String()) != sha256.Sum256(content) {
				t.Fatal("the downloaded file differs")
			}
		})
	}
}
