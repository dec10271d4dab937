package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// OnceOptions configures SendOnce. The zero value waits for
// DeliveredToRecipient and otherwise uses the defaults of Config.
type OnceOptions struct {
	// Config configures the connection as for Dial (Addr, TLSConfig,
	// AllowPlaintext, Logger, ...); Config.OnMessage receives the messages
	// that arrive while SendOnce is connected (replies, offline messages
	// delivered at login), as for a Client; SendOnce returns once those read
	// before its wait ended were handed to it (waiting at most 2 s for a
	// callback that does not return). One default differs from Dial's: a zero
	// StreamManagement.AckEvery means 1, so the server is asked at once to
	// acknowledge the message. The tracking window is Message.Window, else
	// Config.Window, else 5 minutes.
	Config Config

	// Until is the state to wait for: DeliveredToServer,
	// DeliveredToRecipient or SeenByRecipient. Zero (InTransit) means
	// DeliveredToRecipient.
	Until tracking.MessageState
}

// SendOnce logs in to the account, sends one tracked message, waits until it
// reaches opts.Until (or can no longer reach it), disconnects, and returns
// the message's id, the state it was in when waiting ended, and an error.
// It is for programs that send now and then and do not want to keep a
// connection: a send-only bot, a gateway that turns requests into messages.
// Programs that send more should keep a Client and use Client.SendAndWait.
// opts may be nil.
//
// The id is m.ID, or a fresh one when m.ID is empty; it is returned even when
// the message was never sent, so that a caller can log it. When the message
// was never sent, the state is Aborted. Disconnecting ends tracking: a
// message still waiting for proof becomes Closed, but the state returned is
// the one it had before.
//
// # Errors
//
// The error is nil when the message reached opts.Until. Otherwise it matches
// one of these with errors.Is, and its cause stays reachable with errors.Is
// and errors.As:
//
//	what happened                          error matches
//	the server refused our credentials     ErrAuth (an *AuthError: mechanism, SASL condition)
//	our server unreachable: DNS, TCP,      ErrConnect (cause: *net.DNSError, *net.OpError,
//	TLS, certificate, not XMPP (then       tls and x509 errors, *xml.SyntaxError ...), and
//	ErrNotXMPP too), hung up or too slow   context.DeadlineExceeded when ctx's deadline passed
//	during login                           during login
//	no TLS, or no channel binding          ErrNoTLS, ErrNoChannelBinding
//	ctx ended                              ctx.Err() (context.DeadlineExceeded or context.Canceled)
//	no recipient in m.To                   stanza.ErrInvalidHandle
//	an error reply (ERROR state)           tracking.ErrFailed and the reply's kind:
//	                                       stanza.ErrOffline, ErrNotAvailable,
//	                                       ErrPermissionDenied, ErrInvalidHandle,
//	                                       ErrNotImplemented or ErrNetwork (the
//	                                       recipient's server is unreachable)
//	                                       (cause: *stanza.DeliveryError, mellium's stanza.Error)
//	tracking window ended short of Until   tracking.ErrTimedOut
//	connection lost, client closed         stanza.ErrDisconnected, with tracking.ErrAborted or
//	                                       tracking.ErrClosed (cause: the connection error,
//	                                       ErrClientClosed, or ErrAuth when re-login failed);
//	                                       before the message was written (no connection
//	                                       until ctx ended, a write that failed), with the
//	                                       connection's or ctx's error instead
//
// A connection that drops while waiting is re-established and the stream
// resumed, as for any Client: the message is not lost and tracking goes on.
// If the window or ctx ends while the connection is down, the error matches
// stanza.ErrDisconnected as well as tracking.ErrTimedOut or the context's
// error.
//
// An error reply ends waiting at once, although a later receipt could still
// lift the ERROR state: SendOnce disconnects, so no such proof could arrive.
func SendOnce(ctx context.Context, account jid.JID, password string, m Message, opts *OnceOptions) (id string, st tracking.MessageState, err error) {
	var o OnceOptions
	if opts != nil {
		o = *opts
	}
	if m.ID == "" {
		m.ID = NewID()
	}
	target, err := onceTarget(o.Until)
	if err != nil {
		return m.ID, tracking.Aborted, err
	}
	if err := checkRecipient(m.To); err != nil {
		return m.ID, tracking.Aborted, err
	}
	cfg := o.Config
	if cfg.StreamManagement.AckEvery == 0 {
		cfg.StreamManagement.AckEvery = 1
	}
	// Configuration mistakes are reported before anything is opened.
	lc := loginConfig(account, password, &cfg)
	if err := lc.Check(); err != nil {
		return m.ID, tracking.Aborted, err
	}
	c, err := Dial(ctx, account, password, &cfg)
	if err != nil {
		return m.ID, tracking.Aborted, err
	}
	defer c.Close()
	id, st, err = c.SendAndWait(ctx, m, target)
	// A reply read before the marker or receipt that ended the wait is
	// queued for Config.OnMessage; Close would drop it.
	c.runQueuedCallbacks(ctx)
	return id, st, err
}

// runQueuedCallbacks waits until the callbacks queued so far have run, or
// ctx ends, or closeGrace passed (a callback that does not return).
func (c *Client) runQueuedCallbacks(ctx context.Context) {
	done := make(chan struct{})
	if !c.ev.push(func() { close(done) }) {
		return
	}
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-t.C:
	}
}

// SendAndWait sends a tracked message with the client and waits until it
// reaches target (DeliveredToServer, DeliveredToRecipient or
// SeenByRecipient), or can no longer reach it, or ctx ends. It returns the
// message's id (m.ID, or a fresh one when empty), its state when waiting
// ended, and an error as documented for SendOnce (minus the login errors).
// When the message was never sent, the state is Aborted.
//
// Tracking goes on after SendAndWait returns: Config.OnStateChange still sees
// later changes (a displayed marker after the receipt, the end of the
// window).
func (c *Client) SendAndWait(ctx context.Context, m Message, target tracking.MessageState) (id string, st tracking.MessageState, err error) {
	if m.ID == "" {
		m.ID = NewID()
	}
	if _, err := onceTarget(target); err != nil || target == tracking.InTransit {
		return m.ID, tracking.Aborted, tracking.ErrInvalidTarget
	}
	if err := checkRecipient(m.To); err != nil {
		return m.ID, tracking.Aborted, err
	}
	t, err := c.Send(ctx, m)
	if err != nil {
		if t == nil {
			return m.ID, tracking.Aborted, sendError(err)
		}
		return t.ID(), t.State(), sendError(err)
	}
	c.waitBegin() // a callback may wait here for what the reader reads
	st, err = t.Wait(ctx, target)
	c.waitEnd()
	return t.ID(), st, c.waitError(ctx, err)
}

// onceTarget checks a state to wait for; InTransit means DeliveredToRecipient.
func onceTarget(s tracking.MessageState) (tracking.MessageState, error) {
	switch s {
	case tracking.InTransit:
		return tracking.DeliveredToRecipient, nil
	case tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.SeenByRecipient:
		return s, nil
	}
	return s, tracking.ErrInvalidTarget
}

// checkRecipient reports a missing recipient as an invalid handle.
func checkRecipient(to jid.JID) error {
	if to.Domainpart() == "" {
		return fmt.Errorf("%w: the message has no recipient (Message.To)", stanza.ErrInvalidHandle)
	}
	return nil
}

// sendError maps an error of Client.Send, which classified it where it
// happened (a connection that was down until ctx ended, or broke under
// the write, already matches stanza.ErrDisconnected): the end of the
// client is a disconnection as well.
func sendError(err error) error {
	if errors.Is(err, ErrClientClosed) && !errors.Is(err, stanza.ErrDisconnected) {
		return fmt.Errorf("%w: %w", stanza.ErrDisconnected, err)
	}
	return err
}

// waitError maps an error of MessageTracker.Wait.
func (c *Client) waitError(ctx context.Context, err error) error {
	switch {
	case err == nil, errors.Is(err, tracking.ErrFailed):
		return err
	case errors.Is(err, tracking.ErrAborted), errors.Is(err, tracking.ErrClosed):
		// The server never took it, or tracking was ended by Close or by a
		// permanent connection failure (the client records both before
		// ending tracking).
		cause := c.Err()
		if cause == nil && c.isClosed() {
			cause = ErrClientClosed
		}
		if cause == nil && errors.Is(err, tracking.ErrClosed) {
			return err // closed by the application, not by the connection
		}
		if cause == nil {
			return fmt.Errorf("%w: %w", stanza.ErrDisconnected, err)
		}
		return fmt.Errorf("%w: %w: %w", stanza.ErrDisconnected, err, cause)
	}
	// The window or ctx ended: was the connection down at that moment
	// (we could not have heard the proof)? Not whether it is down now.
	at := time.Now()
	if d, ok := ctx.Deadline(); ok && errors.Is(err, context.DeadlineExceeded) {
		at = d
	}
	if c.wasDown(at) {
		return fmt.Errorf("%w (%w: the connection was down)", err, stanza.ErrDisconnected)
	}
	return err
}

// isClosed reports whether Close, Shutdown or a permanent failure ended the client.
func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing || c.shutting
}
