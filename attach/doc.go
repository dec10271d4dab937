// Package attach sends files as tracked XMPP messages, through the HTTP File
// Upload service (XEP-0363) of the account's server.
//
// [Uploader.Send] finds the upload service, asks it for a slot (the file's
// name, size and content type), uploads the body with an HTTP PUT, then
// sends a message whose body is the download URL and that carries the same
// URL as XEP-0066 out-of-band data (jabber:x:oob), so that Conversations,
// Dino, Gajim and other clients show the file inline. The message is an
// ordinary tracked message: its tracker goes through DELIVERED_TO_SERVER,
// DELIVERED_TO_RECIPIENT and SEEN_BY_RECIPIENT like any other.
// [Uploader.SendVia] sends it another way, for example to a room with
// muc.Room.SendMessage. [Uploader.Upload] only uploads.
//
//	u := attach.New(c, &attach.Config{TLSConfig: cfg.TLSConfig})
//	f, _ := os.Open("report.pdf")
//	st, _ := f.Stat()
//	sent, err := u.Send(ctx, bob, attach.File{Name: "report.pdf", Size: st.Size(), Body: f})
//
// # The upload
//
// The service is the first item of the account's domain (disco#items) whose
// disco#info announces urn:xmpp:http:upload:0, else the domain itself; its
// max-file-size is read from the XEP-0128 form. A file larger than that is
// refused with a *TooLargeError before a slot is asked for. The body is
// streamed from the io.Reader with Content-Length set, so a file of any size
// costs a fixed amount of memory; File.Progress reports each read. The PUT
// carries only the headers the slot names that XEP-0363 allows
// (Authorization, Cookie, Expires), plus Content-Type and Content-Length;
// no User-Agent and no Accept-Encoding.
//
// # What is refused
//
//   - A slot refused by the service: a *SlotError, classified like delivery
//     errors (stanza.ErrNotAvailable for a quota, resource-constraint;
//     stanza.ErrPermissionDenied for not-allowed or forbidden; ErrTooLarge
//     for file-too-large, with the limit the service named).
//   - http:// put or get URLs, unless Config.AllowPlaintext (loopback tests):
//     ErrPlaintext, before any byte is sent.
//   - HTTPS servers whose certificate does not verify against
//     Config.TLSConfig (give the XMPP connection's), checked for the upload
//     host's name.
//   - Redirects: ErrRedirect. The body was streamed once and cannot be sent
//     again, and another host is a party the service did not name.
//   - A status other than 2xx (*HTTPError), a body shorter or longer than
//     File.Size (ErrSize), a connection cut mid-upload, ctx ending.
//
// In every one of these cases no message is sent and nothing is tracked:
// the message exists only once the upload succeeded.
//
// # File names
//
// The name sent to the service ends the download URL, so it is cleaned:
// only what follows the last "/" or "\" is kept, control characters,
// Unicode format characters (such as bidirectional overrides) and invalid
// UTF-8 are dropped, and a name longer than MaxNameLen bytes is shortened,
// keeping its extension. A name with nothing left is refused (ErrBadName).
//
// # Captions
//
// File.Caption is sent as a second tracked message right after the file's,
// not in the same body: clients show a file inline only when the body is
// exactly the out-of-band URL, and a body with text around the URL shows as
// a plain link. [Sent] holds both trackers.
//
// # Contexts and mellium
//
// mellium's upload.GetSlot and disco functions take one context for writing
// the IQ and for waiting for its reply, and mellium v0.23.0 applies the end
// of that context to the connection's write deadline, which can fail other
// goroutines' writes on the same connection, or cut its own write and leave
// half a stanza on the stream. So this package writes its IQs (disco#items,
// disco#info, the slot request) the way the client writes messages, without
// handing mellium a context: if ctx ends while an IQ is being written, the
// connection is closed and the client resumes the stream. The reply is taken
// off the stream through xmpptrack.Observer.IQ, only from the address asked,
// with the random id of the request. The slot request is mellium's
// upload.File, the reply is read into mellium's upload.Slot, whose Put builds
// the PUT request, and the message payload is mellium's oob.Data; error
// replies are decoded here, because mellium's stanza.Error drops the limit in
// <file-too-large/> and the time in <retry/>.
package attach // import "github.com/xmpptrack/xmpptrack/attach"
