package main

import (
	"os"
	"testing"
)

// TestIONow: the write system calls of this process are counted.
func TestIONow(t *testing.T) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u0 := ioNow(os.Getpid())
	for range 10 {
		f.Write([]byte("x"))
	}
	d := ioNow(os.Getpid()).sub(u0)
	if d.selfW < 10 || d.loadW < 10 {
		t.Errorf("10 writes counted as %d (self) and %d (as the load client's pid)", d.selfW, d.loadW)
	}
}
