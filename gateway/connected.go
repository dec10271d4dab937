package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/xmpptrack/xmpptrack"
)

const joinTimeout = 30 * time.Second

var errNotConnected = errors.New("not connected")

// connected reports whether the client has a connection now: it asks for
// the session with a short deadline, since Session waits while the client
// reconnects.
func connected(ctx context.Context, c *xmpptrack.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Session(ctx); err != nil {
		return errNotConnected
	}
	return nil
}
