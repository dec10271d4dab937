// Package route marks the sends that an extension such as package muc makes
// on its own behalf, so that the client does not hand them back to it.
package route

import "context"

type directKey struct{}

// Direct returns ctx marked so that Client.Send writes the message itself
// instead of handing it to the room that takes over messages to its address.
func Direct(ctx context.Context) context.Context {
	return context.WithValue(ctx, directKey{}, true)
}

// IsDirect reports whether ctx was marked by Direct.
func IsDirect(ctx context.Context) bool {
	v, _ := ctx.Value(directKey{}).(bool)
	return v
}
