package muc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoCancellableContextToMellium guards the rule that this package never
// hands mellium a context another goroutine's write could suffer from:
// mellium v0.23.0's session writes arm a goroutine that, once the context
// ends, sets the connection's write deadline to the past, possibly after
// the write returned and while another goroutine writes (and a write cut
// that way leaves half a stanza on the stream). Every write goes through
// internal/wire, and answers are read by the room's observers. The race
// itself is too rare to reproduce on demand, so this test reads the
// package's code: no call to a mellium session's write or request
// methods, nor to mellium's muc or disco helpers that write with the
// caller's context (Join, Leave, GetInfo ...). The receivers allowed are
// the room itself (r) and our client (r.c, c), whose Send goes through
// internal/wire.
func TestNoCancellableContextToMellium(t *testing.T) {
	writers := map[string]bool{}
	for _, m := range []string{"Send", "SendElement", "SendIQ", "SendIQElement", "SendPresence",
		"SendPresenceElement", "SendMessage", "SendMessageElement", "Encode", "EncodeElement",
		"EncodeIQ", "EncodeIQElement", "UnmarshalIQ", "UnmarshalIQElement", "IterIQ", "IterIQElement",
		"Join", "JoinPresence", "Leave", "LeavePresence", "GetInfo", "GetInfoIQ", "GetItems", "Ping"} {
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
			switch recv := render(sel.X); recv {
			case "r", "r.c", "c":
			default:
				t.Errorf("%s: %s.%s writes through mellium with the caller's context; use internal/wire",
					fset.Position(call.Pos()), recv, sel.Sel.Name)
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source files read")
	}
}

// render renders a receiver expression such as r.c.
func render(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return render(e.X) + "." + e.Sel.Name
	}
	return "?"
}
