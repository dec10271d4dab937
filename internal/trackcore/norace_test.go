//go:build !race

package trackcore

const raceEnabled = false
