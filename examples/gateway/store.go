package main

import (
	"context"
	"fmt"

	"github.com/xmpptrack/xmpptrack/store"
)

// openStore opens the -store record: "memory" keeps it in memory.
func openStore(ctx context.Context, spec string) (store.Store, func(), error) {
	if spec == "memory" {
		return nil, func() {}, nil
	}
	return nil, nil, fmt.Errorf("-store %s: no durable store in this build yet; use -store memory", spec)
}
