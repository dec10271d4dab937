//go:build !unix && !windows

package procio

import "time"

// SelfCPU returns 0: this system has no call for it in package syscall.
func SelfCPU() time.Duration { return 0 }
