package attach

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"mellium.im/xmpp/upload"
)

// newHTTPClient returns the HTTP client uploads use: cfg.HTTPClient (copied)
// or one whose TLS configuration is cfg.TLSConfig, and in both cases one
// that follows no redirect.
func newHTTPClient(cfg *Config) *http.Client {
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		var tc *tls.Config
		if cfg.TLSConfig != nil {
			tc = cfg.TLSConfig.Clone()
			// The XMPP connection's configuration usually names the
			// account's domain; the upload host is another name, which
			// the transport fills in per request.
			tc.ServerName = ""
		}
		tr.TLSClientConfig = tc
		// Leave Accept-Encoding out of the PUT: only the headers the
		// service chose, plus the ones HTTP itself needs, are sent.
		tr.DisableCompression = true
		// Writes of 64 KiB (curl's upload buffer) instead of the 4 KiB
		// default: a large upload takes fewer system calls.
		tr.WriteBufferSize = 64 << 10
		tr.ReadBufferSize = 64 << 10
		tr.ResponseHeaderTimeout = 2 * time.Minute
		hc.Transport = tr
	}
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		return fmt.Errorf("%w to %s", ErrRedirect, req.URL.Redacted())
	}
	return &hc
}

// checkURL accepts https URLs, and http ones when plaintext is allowed.
func checkURL(u *url.URL, what string, allowPlaintext bool) error {
	if u == nil || u.Host == "" {
		return fmt.Errorf("%w: no %s URL", ErrBadSlot, what)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowPlaintext {
			return nil
		}
		return fmt.Errorf("%w: %s URL %s (set Config.AllowPlaintext for loopback tests)", ErrPlaintext, what, u.Redacted())
	}
	return fmt.Errorf("%w: %s URL scheme %q", ErrBadSlot, what, u.Scheme)
}

// put uploads f's body to the slot.
func put(ctx context.Context, hc *http.Client, slot upload.Slot, f *File, contentType string) error {
	body := &countingReader{r: f.Body, size: f.Size, progress: f.Progress}
	// Slot.Put keeps only the headers XEP-0363 lets the service set
	// (Authorization, Cookie, Expires).
	req, err := slot.Put(ctx, body)
	if err != nil {
		return fmt.Errorf("attach: building the PUT request: %w", err)
	}
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.ContentLength = f.Size
	if f.Size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", contentType)
	// An empty User-Agent is not sent.
	req.Header.Set("User-Agent", "")
	resp, err := hc.Do(req)
	sent, berr := body.state()
	if berr != nil {
		// The transport reports a short or long body in its own words;
		// ours says which.
		err = berr
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("attach: upload stopped: %w", ctx.Err())
		}
		return fmt.Errorf("attach: upload failed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return fmt.Errorf("%w: HTTP %s to %s", ErrRedirect, resp.Status, resp.Header.Get("Location"))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &HTTPError{StatusCode: resp.StatusCode, Status: resp.Status, Body: string(b)}
	}
	// Read a little of the body so that the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if sent, _ = body.state(); sent != f.Size {
		return fmt.Errorf("%w: the server answered after %d of %d bytes", ErrSize, sent, f.Size)
	}
	return nil
}

// countingReader reads exactly size bytes from r, reporting progress. The
// HTTP transport reads it on a goroutine of its own, so what it learned is
// read through state.
type countingReader struct {
	r        io.Reader
	size     int64
	progress func(sent, total int64)

	mu  sync.Mutex
	n   int64
	err error
}

func (c *countingReader) state() (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.err
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.n == c.size {
		// Check that the body really ends here.
		var one [1]byte
		n, err := io.ReadFull(c.r, one[:])
		if n > 0 {
			c.err = fmt.Errorf("%w: the body is longer than %d bytes", ErrSize, c.size)
			return 0, c.err
		}
		if err != nil && !errors.Is(err, io.EOF) {
			c.err = err
			return 0, err
		}
		return 0, io.EOF
	}
	if rest := c.size - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 && c.progress != nil {
		c.progress(c.n, c.size)
	}
	if errors.Is(err, io.EOF) {
		if c.n < c.size {
			c.err = fmt.Errorf("%w: the body ended after %d of %d bytes", ErrSize, c.n, c.size)
			return n, c.err
		}
		err = nil
	}
	if err != nil {
		c.err = err
	}
	return n, err
}
