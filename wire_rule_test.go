package xmpptrack

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoContextToMellium guards the rule that the client never hands
// mellium a context: mellium v0.23.0's session writes arm a goroutine that,
// once the context ends, sets the connection's write deadline to the past,
// possibly after the write returned and while another goroutine writes
// (and a write cut that way leaves half a stanza on the stream); its
// request helpers (carbons.Enable, UnmarshalIQ ...) also leave a goroutine
// waiting for an answer a dead session never gives. Every write goes
// through internal/wire, and answers are read by the tap. The race is too
// rare to reproduce on demand, so this test reads the package's code: no
// call to a mellium session's write or request methods, to the stream
// management State's SendAck (which writes through mellium), or to
// mellium's carbons helpers. The only receivers allowed for those names
// are the client itself (c), whose Send goes through internal/wire, and
// encoding/xml's encoders.
func TestNoContextToMellium(t *testing.T) {
	writers := map[string]bool{}
	for _, m := range []string{"Send", "SendElement", "SendIQ", "SendIQElement", "SendPresence",
		"SendPresenceElement", "SendMessage", "SendMessageElement", "Encode", "EncodeElement",
		"EncodeIQ", "EncodeIQElement", "UnmarshalIQ", "UnmarshalIQElement", "IterIQ", "IterIQElement",
		"SendAck", "Enable", "EnableIQ", "Disable", "DisableIQ", "Ping"} {
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
			if recv := renderExpr(sel.X); recv != "c" && !strings.HasPrefix(recv, "xml.") {
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

// renderExpr renders a receiver expression such as c.sm.
func renderExpr(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return renderExpr(e.X) + "." + e.Sel.Name
	case *ast.CallExpr:
		return renderExpr(e.Fun) + "()"
	}
	return "?"
}
