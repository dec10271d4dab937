//go:build race

package trackcore

// raceEnabled: the race detector slows the model tests about twentyfold;
// they run fewer seeds under it.
const raceEnabled = true
