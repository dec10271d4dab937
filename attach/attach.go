package attach

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"sync"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/oob"
	"mellium.im/xmpp/upload"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Config configures an Uploader. The zero value discovers the service,
// verifies HTTPS certificates against the system roots and refuses
// plain-HTTP URLs.
type Config struct {
	// TLSConfig verifies the upload server's certificate. Give the one given
	// to xmpptrack.Config.TLSConfig, so that uploads trust what the XMPP
	// connection trusts; its ServerName is ignored (the upload host's name is
	// checked). Nil means the system roots. Ignored when HTTPClient is set.
	TLSConfig *tls.Config
	// AllowPlaintext accepts http:// upload and download URLs: for loopback
	// tests, like xmpptrack.Config.AllowPlaintext.
	AllowPlaintext bool
	// HTTPClient, when set, makes the PUT requests (a copy of it that follows
	// no redirect). Nil means a client of this package's own.
	HTTPClient *http.Client
	// Service is the upload service's address. Zero means discovering it
	// among the items of the account's domain.
	Service jid.JID
	// Logger receives the service found and each upload at debug level. Nil
	// means silent.
	Logger *slog.Logger
}

// File is a file to send.
type File struct {
	// Name is the file's name, without directories; it ends the download URL.
	// It is cleaned before use (see the package documentation).
	Name string
	// Size is the body's length in bytes; it must be exact.
	Size int64
	// ContentType is the MIME type. Empty means one guessed from the name's
	// extension, else application/octet-stream.
	ContentType string
	// Body is read once, Size bytes, while the file is uploaded; it is never
	// held in memory whole.
	Body io.Reader
	// Caption, when not empty, is sent as a second tracked message right
	// after the file's (see the package documentation).
	Caption string
	// Progress, when set, is called after each read of Body with the bytes
	// read so far and Size, on the goroutine that writes the request: it must
	// return quickly.
	Progress func(sent, total int64)
}

// Sent is a file that was uploaded and announced.
type Sent struct {
	// URL is where recipients download the file.
	URL *url.URL
	// File tracks the message that carries URL.
	File *tracking.MessageTracker
	// Caption tracks the caption's message; nil without a caption or when
	// it could not be sent.
	Caption *tracking.MessageTracker
}

// SendFunc sends a message and returns its tracker, as Client.Send does.
// muc.Room's SendMessage is one.
type SendFunc func(ctx context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error)

// Uploader uploads files through the HTTP File Upload service of a client's
// server and sends them as tracked messages. It is safe for concurrent use.
type Uploader struct {
	c     *xmpptrack.Client
	cfg   Config
	http  *http.Client
	query queryFunc
	log   *slog.Logger

	mu      sync.Mutex
	service *Service
}

// New returns an Uploader for c. cfg may be nil.
func New(c *xmpptrack.Client, cfg *Config) *Uploader {
	u := &Uploader{c: c}
	if cfg != nil {
		u.cfg = *cfg
	}
	u.http = newHTTPClient(&u.cfg)
	u.query = sessionQuery(c)
	u.log = u.cfg.Logger
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	return u
}

// Service returns the upload service: Config.Service, or the one found among
// the items of the account's domain. It is asked once; later calls return
// what it said. Without a service the error matches ErrNoService.
func (u *Uploader) Service(ctx context.Context) (Service, error) {
	u.mu.Lock()
	if u.service != nil {
		defer u.mu.Unlock()
		return *u.service, nil
	}
	u.mu.Unlock()
	var (
		svc Service
		err error
	)
	if !u.cfg.Service.Equal(jid.JID{}) {
		svc, err = serviceInfo(ctx, u.query, u.cfg.Service)
	} else {
		var s interface{ LocalAddr() jid.JID }
		if s, err = u.c.Session(ctx); err != nil {
			return Service{}, err
		}
		svc, err = discover(ctx, u.query, s.LocalAddr().Domain())
	}
	if err != nil {
		return Service{}, err
	}
	u.log.Debug("attach: upload service", "jid", svc.JID, "max_size", svc.MaxSize)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.service = &svc
	return svc, nil
}

// serviceInfo asks a given service for its limit.
func serviceInfo(ctx context.Context, q queryFunc, j jid.JID) (Service, error) {
	var info discoInfo
	if err := q(ctx, j, query(discoNSInfo), &info); err != nil {
		return Service{}, fmt.Errorf("attach: asking %s for its features: %w", j, err)
	}
	ok, max := info.upload()
	if !ok {
		return Service{}, fmt.Errorf("%w: %s does not announce %s", ErrNoService, j, nsUpload)
	}
	return Service{JID: j, MaxSize: max}, nil
}

// Upload uploads f and returns its download URL. It sends no message.
//
// Errors: ErrBadName, ErrTooLarge (*TooLargeError, before anything is
// asked), ErrNoService, *SlotError (the service refused: ErrTooLarge,
// stanza.ErrNotAvailable for a quota, stanza.ErrPermissionDenied),
// ErrPlaintext, ErrBadSlot, ErrRedirect, *HTTPError (a status other than
// 2xx), ErrSize, ctx.Err(), or the transport's error (a cut connection, a
// certificate that does not verify).
func (u *Uploader) Upload(ctx context.Context, f File) (*url.URL, error) {
	name, err := cleanName(f.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", err, f.Name)
	}
	if f.Size < 0 {
		return nil, fmt.Errorf("%w: negative size %d", ErrSize, f.Size)
	}
	if f.Body == nil && f.Size > 0 {
		return nil, fmt.Errorf("%w: no body", ErrSize)
	}
	ct := f.ContentType
	if ct == "" {
		ct = mime.TypeByExtension(path.Ext(name))
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	svc, err := u.Service(ctx)
	if err != nil {
		return nil, err
	}
	if svc.MaxSize > 0 && f.Size > svc.MaxSize {
		return nil, &TooLargeError{Size: f.Size, Max: svc.MaxSize}
	}
	slot, err := requestSlot(ctx, u.query, svc.JID, upload.File{Name: name, Size: int(f.Size), Type: ct})
	if err != nil {
		return nil, err
	}
	if err := checkURL(slot.PutURL, "put", u.cfg.AllowPlaintext); err != nil {
		return nil, err
	}
	if err := checkURL(slot.GetURL, "get", u.cfg.AllowPlaintext); err != nil {
		return nil, err
	}
	if err := put(ctx, u.http, slot, &f, ct); err != nil {
		return nil, err
	}
	u.log.Debug("attach: uploaded", "name", name, "size", f.Size, "url", slot.GetURL.Redacted())
	return slot.GetURL, nil
}

// requestSlot asks the service for a slot. mellium's upload.GetSlot would
// do, but it decodes error replies into a stanza.Error, which drops the
// service's limit (<file-too-large/>) and its <retry/> time, and it takes
// one context for writing and waiting (see sessionQuery).
func requestSlot(ctx context.Context, q queryFunc, to jid.JID, f upload.File) (upload.Slot, error) {
	var slot upload.Slot
	err := q(ctx, to, f.TokenReader(), &slot)
	var ie *iqError
	if errors.As(err, &ie) {
		return slot, slotError(ie)
	}
	if err != nil {
		return slot, fmt.Errorf("attach: asking %s for a slot: %w", to, err)
	}
	return slot, nil
}

// Message returns the message that announces a file: its body is the URL
// alone and it carries the URL as XEP-0066 out-of-band data, which is what
// Conversations, Dino, Gajim and others need to show the file inline.
func Message(get *url.URL) xmpptrack.Message {
	s := get.String()
	return xmpptrack.Message{Body: s, Payload: oob.Data{URL: s}.TokenReader()}
}

// Send uploads f and sends it to a one-to-one chat with Client.Send.
func (u *Uploader) Send(ctx context.Context, to jid.JID, f File) (*Sent, error) {
	return u.SendVia(ctx, f, func(ctx context.Context, m xmpptrack.Message) (*tracking.MessageTracker, error) {
		m.To = to
		return u.c.Send(ctx, m)
	})
}

// SendVia uploads f and sends it with send: muc.Room.SendMessage for a room.
// Nothing is sent when the upload fails. When the file's message was sent
// but the caption's was not, the Sent and the error are both returned.
func (u *Uploader) SendVia(ctx context.Context, f File, send SendFunc) (*Sent, error) {
	get, err := u.Upload(ctx, f)
	if err != nil {
		return nil, err
	}
	sent := &Sent{URL: get}
	if sent.File, err = send(ctx, Message(get)); err != nil {
		return sent, fmt.Errorf("attach: sending the file's message: %w", err)
	}
	if f.Caption != "" {
		if sent.Caption, err = send(ctx, xmpptrack.Message{Body: f.Caption}); err != nil {
			sent.Caption = nil
			return sent, fmt.Errorf("attach: sending the caption: %w", err)
		}
	}
	return sent, nil
}
