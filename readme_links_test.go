package xmpptrack_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestDocLinks checks that every relative link in README.md and docs/*.md
// names a file that exists and, for a Markdown file, an anchor that one of
// its headings makes (GitHub's rules: lower case, punctuation dropped,
// spaces to hyphens, "-1", "-2" for repeated headings). The results tables
// are rewritten by hand after each quiet run; this keeps their links whole.
func TestDocLinks(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"README.md"}, files...)
	anchors := map[string]map[string]bool{}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range mdLinks(string(b)) {
			checked++
			path, frag, _ := strings.Cut(l.target, "#")
			target := f
			if path != "" {
				target = filepath.Join(filepath.Dir(f), filepath.FromSlash(path))
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s:%d: link to a missing file: %s", f, l.line, l.target)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			a, ok := anchors[target]
			if !ok {
				tb, err := os.ReadFile(target)
				if err != nil {
					t.Fatal(err)
				}
				a = mdAnchors(string(tb))
				anchors[target] = a
			}
			if !a[frag] {
				t.Errorf("%s:%d: link to a missing anchor: %s", f, l.line, l.target)
			}
		}
	}
	if checked == 0 {
		t.Fatal("found no relative link in README.md and docs/*.md: the link pattern is broken")
	}
}

type mdLink struct {
	line   int
	target string
}

var mdLinkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// mdLinks returns the relative link targets of a Markdown text, outside
// fenced code blocks.
func mdLinks(text string) []mdLink {
	var links []mdLink
	fenced := false
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		for _, m := range mdLinkRE.FindAllStringSubmatch(line, -1) {
			if strings.Contains(m[1], "://") || strings.HasPrefix(m[1], "mailto:") {
				continue
			}
			links = append(links, mdLink{line: i + 1, target: m[1]})
		}
	}
	return links
}

var (
	mdHeadingRE = regexp.MustCompile(`^#{1,6}\s+(.*)$`)
	mdInlineRE  = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// mdAnchors returns the anchors the headings of a Markdown text make.
func mdAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		m := mdHeadingRE.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		h := mdInlineRE.ReplaceAllString(m[1], "$1")
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(h)) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		s := b.String()
		if n := seen[s]; n > 0 {
			anchors[s+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[s] = true
		}
		seen[s]++
	}
	return anchors
}
