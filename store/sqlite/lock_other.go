//go:build !linux

package sqlite

import "os"

// lockFile takes no lock: on this system a lease covers only the Store that
// holds it.
func lockFile(string, int64) (*os.File, error) { return nil, nil }

// exclusiveVFS is empty: without the lock that keeps other processes out
// (processLock), a store always shares its file (as with Config.Shared).
const exclusiveVFS = ""

// processLock takes no lock on this system.
func processLock(path string, _ bool) (func(), string, error) { return func() {}, path + "-lock", nil }
