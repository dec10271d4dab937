//go:build race

package xmpptrack

// raceEnabled: the race detector slows everything down about tenfold;
// scale tests shrink under it.
const raceEnabled = true
