//go:build !linux

package main

import (
	"os"
	"syscall"
)

// dieWithParent is nil: only Linux kills a child when its parent dies
// (Pdeathsig). Here a child outlives a bench that is killed (one that
// ends normally still stops its children).
func dieWithParent() *syscall.SysProcAttr { return nil }

// maxRSS is 0: the peak resident set is read on Linux only (the unit of
// ru_maxrss differs between systems, and Windows has none).
func maxRSS(*os.ProcessState) int64 { return 0 }
