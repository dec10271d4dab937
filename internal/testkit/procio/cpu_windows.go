package procio

import (
	"syscall"
	"time"
)

// SelfCPU returns the CPU time this process used so far, user and kernel,
// all threads (GetProcessTimes); 0 if the system does not say.
func SelfCPU() time.Duration {
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0
	}
	var created, exited, kernel, user syscall.Filetime
	if syscall.GetProcessTimes(h, &created, &exited, &kernel, &user) != nil {
		return 0
	}
	return ticks(kernel) + ticks(user)
}

// ticks is a FILETIME read as a duration: a count of 100 ns intervals.
func ticks(f syscall.Filetime) time.Duration {
	return time.Duration(int64(f.HighDateTime)<<32|int64(f.LowDateTime)) * 100
}
