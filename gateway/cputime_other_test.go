//go:build !unix

package gateway

import "time"

// cpuTime is not measured on this system: cpu-ns/op reads 0.
func cpuTime() time.Duration { return 0 }
