// Command testreport reads `go test -json` output on standard input, prints
// the package results and the output of every failed test, and ends with one
// line "N passed, N failed, N skipped". It exits non-zero when a test or a
// package failed, or when -noskip is set and a test was skipped: under CI every
// integration test must run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	noSkip := flag.Bool("noskip", false, "fail when any test was skipped")
	flag.Parse()

	outputs := map[string]*strings.Builder{} // by package + test
	var passed, failed, skipped int
	var failedNames, skippedNames []string
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // build errors and other plain output
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			b := outputs[key]
			if b == nil {
				b = &strings.Builder{}
				outputs[key] = b
			}
			if b.Len() < 1<<20 {
				b.WriteString(e.Output)
			}
		case "pass":
			if e.Test == "" {
				fmt.Printf("ok   %s %.1fs\n", e.Package, e.Elapsed)
			} else {
				passed++
			}
			delete(outputs, key)
		case "skip":
			if e.Test == "" {
				fmt.Printf("?    %s [no test files]\n", e.Package)
			} else {
				skipped++
				reason := lastLine(outputs[key])
				skippedNames = append(skippedNames, key+": "+reason)
			}
			delete(outputs, key)
		case "fail":
			if e.Test == "" {
				pkgFailed = true
				fmt.Printf("FAIL %s %.1fs\n", e.Package, e.Elapsed)
				if b := outputs[key]; b != nil {
					fmt.Print(b.String())
				}
				// Tests of the package that never ended (a panic, a
				// timeout's goroutine dump): their output says why.
				for k, b := range outputs {
					if strings.HasPrefix(k, e.Package+" ") && k != key {
						fmt.Printf("--- UNFINISHED %s\n%s", k, b.String())
						delete(outputs, k)
					}
				}
			} else {
				failed++
				failedNames = append(failedNames, key)
				if b := outputs[key]; b != nil {
					fmt.Printf("--- FAIL %s\n%s", key, b.String())
				}
			}
			delete(outputs, key)
		}
	}
	sort.Strings(skippedNames)
	for _, s := range skippedNames {
		fmt.Println("SKIP", s)
	}
	for _, s := range failedNames {
		fmt.Println("FAILED", s)
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	switch {
	case failed > 0 || pkgFailed:
		os.Exit(1)
	case *noSkip && skipped > 0:
		fmt.Println("testreport: tests were skipped; under CI=true every test must run")
		os.Exit(1)
	}
}

func lastLine(b *strings.Builder) string {
	if b == nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
