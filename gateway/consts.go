package gateway

import (
	"errors"
	"time"
)

const joinTimeout = 30 * time.Second

var errNotConnected = errors.New("not connected")
