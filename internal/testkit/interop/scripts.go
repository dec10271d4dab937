package interop

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// scripts holds the Python peers and their shared modules.
//
//go:embed py/*.py
var scripts embed.FS

// Python is the interpreter every peer runs with: Debian's, which has the
// python3-slixmpp and python3-aioxmpp modules.
const Python = "/usr/bin/python3"

// writeScripts creates a temporary directory holding every embedded script
// and returns its path. The caller removes it.
func writeScripts() (string, error) {
	dir, err := os.MkdirTemp("", "xmpptrack-interop-")
	if err != nil {
		return "", fmt.Errorf("interop: %w", err)
	}
	entries, err := fs.ReadDir(scripts, "py")
	if err == nil {
		for _, e := range entries {
			var data []byte
			if data, err = scripts.ReadFile("py/" + e.Name()); err != nil {
				break
			}
			if err = os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
				break
			}
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("interop: writing scripts: %w", err)
	}
	return dir, nil
}
