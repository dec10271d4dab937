package gateway

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"time"
)

//go:embed web/page.html
var pageHTML []byte

//go:embed web/login.html
var loginHTML []byte

// pageCSP allows the pages' own inline script and styles (by hash) and
// same-origin requests, nothing else.
var pageCSP = "default-src 'none'; script-src " + inlineHashes("script", pageHTML) +
	"; style-src " + inlineHashes("style", pageHTML, loginHTML) +
	"; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// inlineHashes returns the CSP hash sources of the inline elements called
// tag in the pages.
func inlineHashes(tag string, pages ...[]byte) string {
	var out []byte
	for _, p := range pages {
		for {
			_, rest, ok := bytes.Cut(p, []byte("<"+tag+">"))
			if !ok {
				break
			}
			body, after, _ := bytes.Cut(rest, []byte("</"+tag+">"))
			sum := sha256.Sum256(body)
			out = append(out, " 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'"...)
			p = after
		}
	}
	return string(bytes.TrimSpace(out))
}

func (g *Gateway) page(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(pageHTML)
}

// loginPage answers an unauthenticated browser asking for the status page:
// a form that sets the token cookie.
func (g *Gateway) loginPage(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("WWW-Authenticate", `Bearer realm="xmpptrack"`)
	w.WriteHeader(http.StatusUnauthorized)
	w.Write(loginHTML)
}

// login checks the form's token and sets it as an HttpOnly, SameSite=Strict
// cookie, which GET requests accept (the page's own fetches and event
// stream); state-changing requests still need the Authorization header.
func (g *Gateway) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := r.PostFormValue("token")
	if _, ok := g.tokens.check(tok); !ok {
		g.loginPage(w, r)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: base64.RawURLEncoding.EncodeToString([]byte(tok)), Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
		Expires: g.now().Add(30 * 24 * time.Hour),
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
