package muc

import "context"

// JoinAgain runs the join that a suspect membership triggers, synchronously.
func JoinAgain(ctx context.Context, r *Room) error { return r.join(ctx) }
