//go:build !linux

package main

import (
	"errors"
	"time"
)

// defaultClient is -client's default (epoll needs Linux).
const defaultClient = "raw"

type epollClient struct{}

func dialEpoll(addr, path, token string, body []byte, conc, depth int) (*epollClient, error) {
	return nil, errors.New("-client epoll needs Linux: use -client raw")
}

func (c *epollClient) close() {}

func (c *epollClient) useKeys() {}

func (c *epollClient) postAll(n int) ([]time.Duration, error) { return nil, errors.New("unreachable") }
