package xmpptrack_test

//go:generate go test -run TestREADMEStateDiagram -update-readme .

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/registry"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite the state diagram in README.md from registry.Diagram")

// The Mermaid state diagram in README.md is the one looplab/fsm draws from
// the transition definition in internal/trackcore. Refresh it with "go generate ." (or go test -run
// TestREADMEStateDiagram -update-readme .).
func TestREADMEStateDiagram(t *testing.T) {
	const open, end = "```mermaid\n", "```\n"
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, open)
	if i < 0 {
		t.Fatal("README.md has no ```mermaid block")
	}
	j := strings.Index(readme[i+len(open):], end)
	if j < 0 {
		t.Fatal("README.md: the ```mermaid block is not closed")
	}
	start, stop := i+len(open), i+len(open)+j
	want := registry.Diagram()
	if !strings.HasSuffix(want, "\n") {
		want += "\n"
	}
	if readme[start:stop] == want {
		return
	}
	if *updateREADME {
		readme = readme[:start] + want + readme[stop:]
		if err := os.WriteFile("README.md", []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the state diagram in README.md differs from registry.Diagram(); run go generate . in the module root\nwant:\n%s", want)
}
