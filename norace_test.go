//go:build !race

package xmpptrack

const raceEnabled = false
