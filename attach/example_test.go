package attach_test

import (
	"context"
	"log"
	"os"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/attach"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// A nightly report, sent to a person and followed until it was seen.
func ExampleUploader_Send() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := &xmpptrack.Config{}
	c, err := xmpptrack.Dial(ctx, jid.MustParse("reports@example.org"), "secret", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	f, err := os.Open("/var/reports/nightly.pdf")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		log.Fatal(err)
	}
	u := attach.New(c, &attach.Config{TLSConfig: cfg.TLSConfig})
	sent, err := u.Send(ctx, jid.MustParse("boss@example.org"), attach.File{
		Name:    info.Name(),
		Size:    info.Size(),
		Body:    f,
		Caption: "Nightly report",
	})
	if err != nil {
		log.Fatal(err) // nothing was sent
	}
	st, err := sent.File.Wait(ctx, tracking.SeenByRecipient)
	log.Println(sent.URL, st, err)
}

// A screenshot posted to a group chat: the room's reflection proves it was
// distributed.
func ExampleUploader_SendVia() {
	ctx := context.Background()
	var (
		c    *xmpptrack.Client // from xmpptrack.Dial
		room *muc.Room         // from muc.Join
		shot *os.File
		size int64
	)
	u := attach.New(c, nil)
	sent, err := u.SendVia(ctx, attach.File{Name: "dashboard.png", Size: size, Body: shot}, room.SendMessage)
	if err != nil {
		log.Fatal(err)
	}
	sent.File.Wait(ctx, tracking.DeliveredToRecipient)
}
