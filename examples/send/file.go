package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/attach"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// uploadFiles uploads every -file and returns their download URLs, in order.
// It stops at the first failure: then nothing is to be sent.
func uploadFiles(ctx context.Context, o *options, c *xmpptrack.Client, tc *tls.Config, stdout, stderr io.Writer) ([]*url.URL, error) {
	if len(o.files) == 0 {
		return nil, nil
	}
	u := attach.New(c, &attach.Config{TLSConfig: tc, AllowPlaintext: o.plaintext})
	var urls []*url.URL
	for _, path := range o.files {
		get, err := uploadFile(ctx, u, path, newProgress(o.json, stdout, stderr))
		if err != nil {
			return nil, fmt.Errorf("%s: %s; nothing was sent", path, explainUpload(err))
		}
		urls = append(urls, get)
	}
	return urls, nil
}

func uploadFile(ctx context.Context, u *attach.Uploader, path string, pr *progress) (*url.URL, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	name := filepath.Base(path)
	pr.begin(name, info.Size())
	get, err := u.Upload(ctx, attach.File{Name: name, Size: info.Size(), Body: f, Progress: pr.update})
	pr.end(get, err)
	return get, err
}

// explainUpload turns an upload failure into words that say what to do.
func explainUpload(err error) string {
	var (
		tooLarge *attach.TooLargeError
		slot     *attach.SlotError
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
	)
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Sprintf("%d bytes is more than the upload service accepts (%d bytes)", tooLarge.Size, tooLarge.Max)
	case errors.Is(err, attach.ErrNoService):
		return "the server offers no HTTP file upload (XEP-0363); ask its admin to enable it"
	case errors.As(err, &slot) && errors.Is(err, stanza.ErrNotAvailable):
		return fmt.Sprintf("the upload service refused for now (quota?): %v", err)
	case errors.As(err, &slot):
		return fmt.Sprintf("the upload service refused: %v", err)
	case errors.Is(err, attach.ErrPlaintext):
		return fmt.Sprintf("%v (use -plaintext only with a loopback test server)", err)
	case errors.As(err, &certErr), errors.As(err, &unknown):
		return fmt.Sprintf("the upload server's certificate is not trusted: %v (-insecure skips the check for testing only)", err)
	}
	return err.Error()
}

// progress shows one file's upload: a bar on a terminal, JSON lines with
// -json, nothing otherwise.
type progress struct {
	json bool
	w    io.Writer // where to draw; nil: nowhere

	mu    sync.Mutex
	name  string
	size  int64
	start time.Time
	last  time.Time
	pct   int64
}

// event is one -json progress line.
type event struct {
	File      string  `json:"file"`
	Sent      int64   `json:"sent"`
	Size      int64   `json:"size"`
	ElapsedMS float64 `json:"elapsed_ms"`
	URL       string  `json:"url,omitempty"`
	Error     string  `json:"error,omitempty"`
}

func newProgress(asJSON bool, stdout, stderr io.Writer) *progress {
	switch {
	case asJSON:
		return &progress{json: true, w: stdout}
	case isTerminal(stderr):
		return &progress{w: stderr}
	}
	return &progress{}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *progress) begin(name string, size int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.size, p.start, p.pct = name, size, time.Now(), -1
	p.show(0, nil, nil, true)
}

// update is the attach.File.Progress hook: at most one line per percent
// with -json, ten redraws a second on a terminal.
func (p *progress) update(sent, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.show(sent, nil, nil, false)
}

func (p *progress) end(get *url.URL, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.show(-1, nil, err, true)
	} else {
		p.show(p.size, get, nil, true)
	}
}

// show prints the state. The caller holds p.mu.
func (p *progress) show(sent int64, get *url.URL, err error, force bool) {
	if p.w == nil {
		return
	}
	now := time.Now()
	pct := int64(100)
	if p.size > 0 && sent >= 0 {
		pct = sent * 100 / p.size
	}
	if p.json {
		if !force && pct == p.pct {
			return
		}
		p.pct = pct
		ev := event{File: p.name, Sent: max(sent, 0), Size: p.size, ElapsedMS: float64(now.Sub(p.start).Microseconds()) / 1000}
		if get != nil {
			ev.URL = get.String()
		}
		if err != nil {
			ev.Error = err.Error()
		}
		b, _ := json.Marshal(ev)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	if !force && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	if sent < 0 {
		fmt.Fprintf(p.w, "\r%s  failed\x1b[K\n", p.name)
		return
	}
	const width = 30
	done := int(pct * width / 100)
	rate := ""
	if secs := now.Sub(p.start).Seconds(); secs > 0 && sent > 0 {
		rate = "  " + bytesText(int64(float64(sent)/secs)) + "/s"
	}
	fmt.Fprintf(p.w, "\r%s  [%s%s] %3d%%  %s/%s%s\x1b[K", p.name,
		strings.Repeat("#", done), strings.Repeat(".", width-done), pct, bytesText(sent), bytesText(p.size), rate)
	if get != nil {
		fmt.Fprintln(p.w)
	}
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
