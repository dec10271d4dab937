// Package wire writes stanzas on a mellium session without handing mellium a
// context that the caller may cancel.
//
// mellium v0.23.0's Session.Send starts a goroutine that, once its context
// is done, sets the connection's write deadline to the past and back. That
// goroutine can still run after Send has returned, so a caller that cancels
// its context right after a successful Send (the usual defer cancel()) can
// make another goroutine's write on the same connection fail with an i/o
// timeout. And when the context ends while a write is blocked, mellium
// leaves half a stanza on the stream and carries on.
//
// Write therefore never passes a context to mellium. The caller's context
// only decides when to give up on a write that has not finished: the
// connection is then closed, because a half-written stanza cannot be taken
// back, and the client reconnects and resumes the stream. A write that has
// finished is never followed by that close.
package wire // import "github.com/xmpptrack/xmpptrack/internal/wire"

import (
	"context"
	"encoding/xml"
	"errors"
	"sync"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
)

// Write writes the elements of rs on s in order, each one flushed on its
// own, while holding the session's output: other writers wait until the
// last one is written. Each reader must yield one whole element from memory
// and never fail.
//
// It returns how many elements were written whole. Each of those went
// through the connection in writes of its own, so stream management has
// counted it; the element that failed has not been counted, whatever part
// of it reached the wire, and may be written again on another connection.
// (Flushing several elements at once would let a write fail after the
// server got some of them whole, uncounted.)
//
// If ctx is done before anything is written, Write returns ctx.Err() at
// once. If ctx ends while Write waits for the output or writes, the
// connection is closed and Write returns ctx.Err(). Any other write error
// closes the connection too: the stream is broken. Except
// xmpp.ErrOutputStreamClosed: the stream was closed (</stream:stream>
// written) before the element, of which nothing was written, and the
// connection is left to the closing handshake.
func Write(ctx context.Context, s *xmpp.Session, rs ...xml.TokenReader) (int, error) {
	var n int
	err := Guard(ctx, s, func() (err error) {
		n, err = write(s, rs)
		return err
	})
	return n, err
}

// Guard runs f, a write on s that takes the session's output itself, by
// the rules of Write: if ctx is done before, f does not run and Guard
// returns ctx.Err(); if ctx ends while f runs, the connection is closed
// and Guard returns ctx.Err(); any error of f closes the connection too,
// except xmpp.ErrOutputStreamClosed (f must then have written nothing).
func Guard(ctx context.Context, s *xmpp.Session, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn := s.Conn()
	if ctx.Done() == nil {
		// ctx can never end (context.Background): nothing to watch, and
		// no watch to register and remove per write (context.AfterFunc
		// costs about half a microsecond and four allocations).
		err := f()
		if err != nil && !errors.Is(err, xmpp.ErrOutputStreamClosed) {
			conn.Close()
		}
		return err
	}
	var mu sync.Mutex
	finished, cut := false, false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			cut = true
			conn.Close()
		}
	})
	err := f()
	mu.Lock()
	finished = true
	wasCut := cut
	mu.Unlock()
	stop()
	if err == nil {
		return nil
	}
	if wasCut {
		conn.Close()
		return ctx.Err()
	}
	if !errors.Is(err, xmpp.ErrOutputStreamClosed) {
		conn.Close()
	}
	return err
}

func write(s *xmpp.Session, rs []xml.TokenReader) (int, error) {
	w := s.TokenWriter()
	defer w.Close()
	for i, r := range rs {
		if raw, ok := r.(*Raw); ok {
			if err := writeRaw(s, w, raw.B); err != nil {
				return i, err
			}
			continue
		}
		if _, err := xmlstream.Copy(w, r); err != nil {
			return i, err
		}
		if err := w.Flush(); err != nil {
			return i, err
		}
	}
	return len(rs), nil
}
