package main

import (
	"runtime/metrics"
	"sync"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
)

// heapPeak samples the heap in use (runtime/metrics, live and not yet
// swept objects) and the garbage collector's heap goal every period until
// stop, and keeps their highest values: what the process needed at its
// worst moment, as opposed to what stays after a collection. Sampling
// reads two metrics and allocates nothing.
type heapPeak struct {
	objects, goal uint64
	done, ended   chan struct{}
	once          sync.Once
}

func startHeapPeak(period time.Duration) *heapPeak {
	p := &heapPeak{done: make(chan struct{}), ended: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	go func() {
		defer close(p.ended)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			metrics.Read(s)
			p.objects = max(p.objects, s[0].Value.Uint64())
			p.goal = max(p.goal, s[1].Value.Uint64())
			select {
			case <-tk.C:
			case <-p.done:
				return
			}
		}
	}()
	return p
}

// stop ends the sampling and returns the peaks in bytes. It may be called
// again.
func (p *heapPeak) stop() (objects, goal int64) {
	p.once.Do(func() { close(p.done) })
	<-p.ended
	return int64(p.objects), int64(p.goal)
}

// hwmNow returns this process's peak resident set so far (VmHWM), in bytes.
// Unlike the peak the parent reads from the child's resource usage, it
// covers only this program's image and only until now: the kernel's
// figure for a child also counts the memory of the parent it was started
// from (os/exec starts children from the parent's address space) and
// whatever the child did after this call.
func hwmNow() int64 { return procio.SelfStatus("VmHWM:") }
