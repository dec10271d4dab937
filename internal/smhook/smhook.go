// Package smhook holds switches of package sm that only this module's
// benchmarks set, so that a change can be measured on and off in one
// binary. Nothing outside the module can reach them, and nothing in the
// library sets them.
package smhook

import "sync/atomic"

// NoCoalesce, once set, turns off coalescing during bursts (sm's
// coalesce.go) for every sm.State created after. The bench's
// xmpptrack-nocoalesce sender sets it in its child process.
var NoCoalesce atomic.Bool
