package main

import (
	"context"
	"errors"

	"github.com/xmpptrack/xmpptrack/store"
)

// openPostgres is replaced once store/postgres is in the module.
func openPostgres(context.Context, string) (store.Store, func(), error) {
	return nil, nil, errors.New("-store postgres://: the PostgreSQL store is not in this build")
}
