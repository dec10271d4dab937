//go:build unix

package procio

import (
	"syscall"
	"time"
)

// SelfCPU returns the CPU time this process used so far, user and system,
// all threads; 0 if the system does not say.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
