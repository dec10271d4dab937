//go:build unix

package main

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCounterStopBounded: a counter that ignores SIGINT is killed.
func TestCounterStopBounded(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "ready")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sc, err := startCounter(t.Context(), 10*time.Millisecond, "sh", "-c", `trap '' INT; echo ready > "$0"; exec sleep 30`, fifo)
	if err != nil {
		t.Fatal(err)
	}
	// The script ignores SIGINT once it has written to the fifo.
	f, err := os.Open(fifo)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(f)
	f.Close()
	if _, err := sc.stop(); err == nil {
		t.Error("stop of a counter that printed nothing: no error")
	}
	ws, ok := sc.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("counter ended %v, want killed", sc.cmd.ProcessState)
	}
}
