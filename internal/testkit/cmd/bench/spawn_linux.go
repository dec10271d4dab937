package main

import (
	"os"
	"syscall"
)

// dieWithParent has the kernel kill a child when this process dies.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// maxRSS is the peak resident set of an exited child, in bytes.
func maxRSS(st *os.ProcessState) int64 {
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		return int64(ru.Maxrss) << 10 // KiB on Linux
	}
	return 0
}
