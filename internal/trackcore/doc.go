// Package trackcore implements message trackers and the registry that
// drives them: the state table compiled from the transition graph, the
// per-conversation order, the registry's own ids (ids.go) and its trackers
// by number (nums.go), the index of the other ids, the timers and the
// callback dispatcher.
//
// It is generic over the evidence type R only so that it need not import
// package tracking, which defines the public types on top of it:
// tracking.MessageTracker is Tracker[tracking.Response] with only its
// reading methods exported, and package internal/registry wraps Registry for
// the client and package muc. Nothing here is reachable from outside the
// module.
package trackcore
