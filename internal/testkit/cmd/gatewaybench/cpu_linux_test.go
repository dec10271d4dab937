//go:build linux

package main

import (
	"os"
	"testing"
	"time"
)

// TestTreeCPU: one scan of /proc gives each root its own process tree's
// CPU time, and nothing for a root of 0.
func TestTreeCPU(t *testing.T) {
	for start := selfCPU(); selfCPU()-start < 50*time.Millisecond; {
		// use some CPU, so that this process has whole clock ticks
	}
	got := treeCPU(0, os.Getpid(), 0)
	if got[0] != 0 || got[2] != 0 || got[1] <= 0 || got[1] > selfCPU()+clockTick {
		t.Fatalf("treeCPU(0, self, 0) = %v, self %v", got, selfCPU())
	}
}
