package testserver

import "testing"

// requireKind skips or fails (under CI=true) without the server kind.
func requireKind(t *testing.T, kind string) {
	t.Helper()
	if kind == "postgres" {
		require(t, "PostgreSQL", PostgresAvailable())
	} else {
		require(t, kind, Available(Kind(kind)))
	}
}
