package gateway

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/tracking"
)

const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium with a fresh profile and a phone-sized
// window. Without Chromium the test is skipped, unless CI=true.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is missing: %v", err)
		}
		t.Skipf("chromium is missing: %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium keeps its shared-memory files in TMPDIR when
		// /dev/shm is off, and leaves their directory behind.
		chromedp.Env("TMPDIR=" + t.TempDir()),
		chromedp.WindowSize(390, 844),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() {
		cancelT()
		cancelC()
		cancelA()
	})
	return ctx
}

// TestPageLive signs in on the status page in a real browser, sends
// messages through the API and sees a row reach SEEN_BY_RECIPIENT without
// a reload; the filter hides rows of other recipients and channels.
func TestPageLive(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := browser(t)
	other := f.send(`{"to":"carol@example.org","body":"other","channel":"billing"}`)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(f.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), testToken),
	); err != nil {
		t.Fatalf("login form: %v", err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("signin"))); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#live.up`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="`+other.ID+`"]`)),
	); err != nil {
		t.Fatalf("page: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	r := f.send(`{"to":"bob@example.org","body":"hello","channel":"ops"}`)
	row := `tr[data-id="` + r.ID + `"]`
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(row+`[data-state="IN_TRANSIT"]`))); err != nil {
		t.Fatalf("new row: %v", err)
	}
	tr := f.fake.tracker(r.ID)
	tr.Advance(tracking.DeliveredToServer, nil)
	tr.Advance(tracking.DeliveredToRecipient, &tracking.Response{From: jid.MustParse("bob@example.org/phone")})
	tr.Advance(tracking.SeenByRecipient, &tracking.Response{From: jid.MustParse("bob@example.org/phone")})
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(row+`[data-state="SEEN_BY_RECIPIENT"]`))); err != nil {
		t.Fatalf("row never reached SEEN_BY_RECIPIENT: %v", err)
	}
	state, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(row+` td.c-state .state`)))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded === true`))
	if err != nil {
		t.Fatal(err)
	}
	if state != "SEEN_BY_RECIPIENT" || !kept {
		t.Fatalf("state cell %q, page kept: %v", state, kept)
	}
	// The filter matches recipients and channels.
	setFilter := func(q string) []string {
		t.Helper()
		// Empty the field, then type (which fires the input events).
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(f => { f.value = ""; return f.dispatchEvent(new Event("input")) })(document.getElementById("filter"))`)); err != nil {
			t.Fatal(err)
		}
		if q != "" {
			if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("filter"), q)); err != nil {
				t.Fatal(err)
			}
		}
		visible, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#rows tr")].filter(r => !r.hidden).map(r => r.dataset.id)`))
		if err != nil {
			t.Fatal(err)
		}
		return visible
	}
	if v := setFilter("bob@"); len(v) != 1 || v[0] != r.ID {
		t.Fatalf("filter bob@ shows %v, want [%s]", v, r.ID)
	}
	if v := setFilter("billing"); len(v) != 1 || v[0] != other.ID {
		t.Fatalf("filter billing shows %v, want [%s]", v, other.ID)
	}
	if v := setFilter(""); len(v) != 2 {
		t.Fatalf("no filter shows %v", v)
	}
	if path := os.Getenv("GATEWAY_SCREENSHOT"); path != "" {
		// A few more rows for the picture in the README.
		e := f.send(`{"to":"nobody@example.org","body":"x","channel":"ops"}`)
		f.fake.tracker(e.ID).Advance(tracking.Error, &tracking.Response{Err: xstanza.Error{Type: xstanza.Cancel, Condition: xstanza.ServiceUnavailable}})
		d := f.send(`{"to":"dave@example.org","body":"x","channel":"deploys"}`)
		f.fake.tracker(d.ID).Advance(tracking.DeliveredToServer, nil)
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-id="`+d.ID+`"][data-state="DELIVERED_TO_SERVER"]`)),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-id="`+e.ID+`"][data-state="ERROR"]`))); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
