//go:build !linux

package main

import "syscall"

// dieWithParent is nil: only Linux kills a child when its parent dies
// (Pdeathsig). Here a child outlives a bench that is killed (one that
// ends normally still stops its children).
func dieWithParent() *syscall.SysProcAttr { return nil }
