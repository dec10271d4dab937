// Package child runs the test binary again as a child process, for tests
// that kill a real process with SIGKILL: the child's TestMain (or the test
// named by run) recognises the variables of env and does the child's part,
// printing lines on its standard output for the parent to read.
package child

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"testing"
)

// Start starts os.Args[0] with -test.run=run (no test timeout), env added to
// the environment and its standard error going to stderr (os.Stderr when
// nil). It returns the command and a scanner of the child's standard
// output. The child is killed and waited for when the test ends.
func Start(t testing.TB, stderr io.Writer, run string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.timeout=0")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}
