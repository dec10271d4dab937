//go:build !unix

package testserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// errNotUnix says why no server starts here: the harness puts each server
// into a process group led by a /bin/sh reaper (see reaper), stops it by
// signals to that group, runs servers as other users and reserves ports
// through flock, none of which this system has.
var errNotUnix = fmt.Errorf("testserver: servers are started on Unix systems only (process groups, signals, flock), not on %s: %w",
	runtime.GOOS, errors.ErrUnsupported)

// supported reports why servers cannot be started on this system.
func supported() error { return errNotUnix }

// The helpers below are never reached: Launch, LaunchPostgres and the
// Available functions return errNotUnix first.

func runAs(*exec.Cmd, *credential) {}

func newGroup(*exec.Cmd) {}

func joinGroup(*exec.Cmd, int) {}

func signalGroup(int, syscall.Signal) error { return errNotUnix }

func (p *process) signalDescendant(int, syscall.Signal) {}

func lockPort(int) (*os.File, error) { return nil, errNotUnix }
