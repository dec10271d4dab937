//go:build race

package gateway

// raceEnabled: under the race detector sync.Pool drops a quarter of what
// is put back, so pooled buffers are allocated again now and then.
const raceEnabled = true
