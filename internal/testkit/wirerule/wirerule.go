// Package wirerule checks a package's own source for writes that hand
// mellium a context. mellium v0.23.0's session writes arm a goroutine that,
// once the context ends, sets the connection's write deadline to the past,
// possibly after the write returned and while another goroutine writes; the
// race is too rare to reproduce on demand, so packages that must write
// through internal/wire instead test their code with Check.
package wirerule

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// SessionWriters are the names of mellium's session methods that write
// with, or wait on, the caller's context.
var SessionWriters = []string{"Send", "SendElement", "SendIQ", "SendIQElement", "SendPresence",
	"SendPresenceElement", "SendMessage", "SendMessageElement", "Encode", "EncodeElement",
	"EncodeIQ", "EncodeIQElement", "UnmarshalIQ", "UnmarshalIQElement", "IterIQ", "IterIQElement"}

// Check reads the non-test Go files of the current directory and reports an
// error for every call of a method named in names whose receiver, rendered
// as source (such as "r.c" or "c.sm"), allowed does not accept.
func Check(t testing.TB, names []string, allowed func(recv string) bool) {
	t.Helper()
	writers := map[string]bool{}
	for _, m := range names {
		writers[m] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !writers[sel.Sel.Name] {
				return true
			}
			if recv := render(sel.X); !allowed(recv) {
				t.Errorf("%s: %s.%s writes through mellium with a context; use internal/wire",
					fset.Position(call.Pos()), recv, sel.Sel.Name)
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source files read")
	}
}

// render renders a receiver expression such as c.sm.
func render(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return render(e.X) + "." + e.Sel.Name
	case *ast.CallExpr:
		return render(e.Fun) + "()"
	}
	return "?"
}
