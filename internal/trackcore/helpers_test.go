package trackcore

import (
	"errors"

	"mellium.im/xmpp/jid"
)

// Response stands for tracking.Response in these tests.
type Response struct {
	From jid.JID
	ID   string
	Err  error
}

type (
	MessageTracker = Tracker[Response]
	MessageState   = State
)

var errReply = errors.New("service-unavailable")
