package attach

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest file name, in bytes, sent to the service.
// Longer names are shortened, keeping the extension.
const MaxNameLen = 200

// maxExtLen is the longest extension kept when a name is shortened.
const maxExtLen = 16

// cleanName returns the name sent to the upload service, which becomes the
// last element of the download URL:
//
//   - only the part after the last "/" or "\" is kept (a path is never
//     sent: "../../etc/passwd" becomes "passwd");
//   - control characters, invalid UTF-8 and Unicode format characters
//     (bidirectional overrides that disguise an extension) are dropped;
//   - white space at either end is dropped;
//   - a name longer than MaxNameLen bytes is cut on a character boundary,
//     keeping an extension of up to 16 bytes.
//
// Nothing left, "." or ".." is ErrBadName.
func cleanName(name string) (string, error) {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for len(name) > 0 {
		r, size := utf8.DecodeRuneInString(name)
		if !(r == utf8.RuneError && size == 1) && !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r) {
			b.WriteRune(r)
		}
		name = name[size:]
	}
	name = strings.TrimSpace(b.String())
	if name == "" || name == "." || name == ".." {
		return "", ErrBadName
	}
	if len(name) <= MaxNameLen {
		return name, nil
	}
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= maxExtLen {
		ext = name[i:]
	}
	stem := name[:len(name)-len(ext)]
	cut := MaxNameLen - len(ext)
	for cut > 0 && !utf8.RuneStart(stem[cut]) {
		cut--
	}
	return strings.TrimSpace(stem[:cut]) + ext, nil
}
