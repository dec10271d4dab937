package tracking

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// panickingCallback is the callback TestCallbackPanicCrashes runs in a child
// process; its name must show in the crash's stack.
func panickingCallback(from, to MessageState, _ *Response) {
	panic("callback panic for " + to.String())
}

// TestCallbackPanicCrashes checks that a panic in a state-change callback
// is not swallowed: the process dies with the panic value and the
// callback's own frame in the stack, as with a panic on any goroutine.
func TestCallbackPanicCrashes(t *testing.T) {
	if os.Getenv("TRACKING_PANIC_CHILD") == "1" {
		tr := NewMessageTracker("m")
		survived := make(chan struct{})
		tr.OnStateChange(panickingCallback)
		tr.OnStateChange(func(MessageState, MessageState, *Response) { close(survived) })
		tr.Advance(DeliveredToServer, nil)
		<-survived // reached only if the panic was swallowed
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCallbackPanicCrashes$")
	cmd.Env = append(os.Environ(), "TRACKING_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the child survived a callback panic:\n%s", out)
	}
	for _, want := range []string{"panic: callback panic for DELIVERED_TO_SERVER", "tracking.panickingCallback"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("crash output lacks %q:\n%s", want, out)
		}
	}
}
