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

var (
	mdLinkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdCodeRE = regexp.MustCompile("`[^`]*`")
)

// mdProse calls f with each line of a Markdown text that is outside fenced
// code blocks (``` or ~~~, indented by up to three spaces; a block ends at
// a fence of its own kind and at least its length), numbered from 1.
func mdProse(text string, f func(n int, line string)) {
	fence := ""
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimLeft(line, " ")
		marker := ""
		if len(line)-len(t) <= 3 && (strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~")) {
			marker = t[:len(t)-len(strings.TrimLeft(t, t[:1]))]
		}
		switch {
		case fence == "" && marker != "":
			fence = marker
		case fence != "" && strings.HasPrefix(marker, fence) && strings.TrimSpace(t[len(marker):]) == "":
			fence = ""
		case fence == "":
			f(i+1, line)
		}
	}
}

// mdLinks returns the relative link targets of a Markdown text, outside
// fenced code blocks and inline code.
func mdLinks(text string) []mdLink {
	var links []mdLink
	mdProse(text, func(n int, line string) {
		for _, m := range mdLinkRE.FindAllStringSubmatch(mdCodeRE.ReplaceAllString(line, ""), -1) {
			if strings.Contains(m[1], "://") || strings.HasPrefix(m[1], "mailto:") {
				continue
			}
			links = append(links, mdLink{line: n, target: m[1]})
		}
	})
	return links
}

var (
	mdHeadingRE = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$`)
	mdInlineRE  = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// mdAnchors returns the anchors the headings of a Markdown text make.
func mdAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	mdProse(text, func(_ int, line string) {
		m := mdHeadingRE.FindStringSubmatch(line)
		if m == nil {
			return
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
	})
	return anchors
}

// TestDocLinksMarkdown checks the Markdown rules TestDocLinks relies on:
// no heading or link inside a fenced block of either kind or in inline
// code, closing #s and link text dropped from headings, repeats numbered.
func TestDocLinksMarkdown(t *testing.T) {
	const text = "# Top ##\n" +
		"~~~sh\n# fake heading\n```\n[a](#in-tilde-fence)\n~~~\n" +
		"  ```\n[b](#in-indented-fence)\n  ```\n" +
		"## A [linked](x.md) `code` heading\n" +
		"## Top\n" +
		"see `[c](#in-code)` and [d](#top-1)\n"
	got := mdAnchors(text)
	want := map[string]bool{"top": true, "a-linked-code-heading": true, "top-1": true}
	if len(got) != len(want) {
		t.Errorf("anchors %v, want %v", got, want)
	}
	for a := range want {
		if !got[a] {
			t.Errorf("anchors %v, want %v", got, want)
		}
	}
	links := mdLinks(text)
	if len(links) != 2 || links[0].target != "x.md" || links[1].target != "#top-1" || links[1].line != 12 {
		t.Errorf("links %+v, want x.md (line 10) and #top-1 (line 12)", links)
	}
}
