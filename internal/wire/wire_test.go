package wire

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// newSession returns a ready session over one end of a net.Pipe, and the
// other end.
func newSession(t *testing.T) (*xmpp.Session, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	ready := func(context.Context, *stream.Info, *stream.Info, *xmpp.Session, any) (xmpp.SessionState, io.ReadWriter, any, error) {
		return xmpp.Ready, nil, nil, nil
	}
	s, err := xmpp.NewSession(t.Context(), jid.MustParse("example.org"), jid.MustParse("alice@example.org"), a, 0, ready)
	if err != nil {
		t.Fatal(err)
	}
	return s, b
}

func msg(id string) xml.TokenReader {
	start := xml.StartElement{Name: xml.Name{Space: "jabber:client", Local: "message"}, Attr: []xml.Attr{{Name: xml.Name{Local: "id"}, Value: id}}}
	return xmlstream.Wrap(nil, start)
}

// drain reads the peer end until it is closed and counts the messages.
func drain(peer net.Conn) <-chan int {
	n := make(chan int, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		n <- bytes.Count(b, []byte("<message"))
	}()
	return n
}

// TestWriteCancelAfterReturn: contexts cancelled as soon as Write returns
// never break a concurrent writer (with Session.Send, mellium's deadline
// goroutine can fire after Send returned and fail the other writer).
func TestWriteCancelAfterReturn(t *testing.T) {
	s, peer := newSession(t)
	count := drain(peer)
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for range 2 {
		wg.Go(func() {
			for range n {
				ctx, cancel := context.WithCancel(t.Context())
				_, err := Write(ctx, s, msg("short"))
				cancel()
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		for range n {
			if err := s.Send(context.Background(), msg("other")); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("write: %v", err)
	}
	s.Conn().Close()
	if got := <-count; got != 3*n {
		t.Errorf("peer read %d messages, want %d", got, 3*n)
	}
}

// TestWriteBlockedContextEnds: a write the peer does not read is given up
// when ctx ends, and the connection is closed.
func TestWriteBlockedContextEnds(t *testing.T) {
	s, peer := newSession(t)
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan error, 1)
	go func() {
		_, err := Write(ctx, s, msg("blocked"))
		got <- err
	}()
	// The pipe is synchronous: the write is under way once the peer reads
	// its first byte; stop reading then.
	if _, err := peer.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("Write: %v, want context.Canceled", err)
	}
	if _, err := io.ReadAll(peer); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
	if _, err := Write(t.Context(), s, msg("after")); err == nil {
		t.Error("a write on the closed connection succeeded")
	}
}

// TestWriteContextDoneBefore: nothing is written and the connection stays.
func TestWriteContextDoneBefore(t *testing.T) {
	s, peer := newSession(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if n, err := Write(ctx, s, msg("never")); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	count := drain(peer)
	if n, err := Write(t.Context(), s, msg("ok")); n != 1 || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	s.Conn().Close()
	if got := <-count; got != 1 {
		t.Errorf("peer read %d messages, want 1", got)
	}
}

// TestWritePartial: when the connection breaks after the first element, Write
// reports one element written and closes the connection.
func TestWritePartial(t *testing.T) {
	s, peer := newSession(t)
	read := make(chan string, 1)
	go func() {
		// Read the first message whole, then hang up.
		var b strings.Builder
		buf := make([]byte, 1)
		for !strings.HasSuffix(b.String(), "</message>") {
			if _, err := peer.Read(buf); err != nil {
				break
			}
			b.Write(buf)
		}
		peer.Close()
		read <- b.String()
	}()
	n, err := Write(t.Context(), s, msg("m1"), msg("m2"), msg("m3"))
	if n != 1 || err == nil {
		t.Fatalf("Write: %d, %v; want 1 and an error", n, err)
	}
	if got := <-read; !strings.Contains(got, "m1") {
		t.Errorf("peer read %q", got)
	}
}

// TestWriteAfterStreamClosed: a write after the stream was closed
// (</stream:stream> written) writes nothing and fails with
// xmpp.ErrOutputStreamClosed, with a context that can end or not; the
// connection is left open for the closing handshake (the peer's
// </stream:stream> still to be read).
func TestWriteAfterStreamClosed(t *testing.T) {
	s, peer := newSession(t)
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		read <- b
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for _, ctx := range []context.Context{context.Background(), ctx} {
		if n, err := Write(ctx, s, msg("late")); n != 0 || !errors.Is(err, xmpp.ErrOutputStreamClosed) {
			t.Fatalf("Write on a closed stream: %d, %v; want 0, xmpp.ErrOutputStreamClosed", n, err)
		}
	}
	// Still open: the peer can write its </stream:stream>.
	if _, err := s.Conn().Write(nil); err != nil {
		t.Fatalf("the connection was closed: %v", err)
	}
	s.Conn().Close()
	if b := <-read; bytes.Contains(b, []byte("late")) {
		t.Errorf("the peer read %q", b)
	}
}
