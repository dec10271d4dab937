package gateway

import (
	_ "embed"
	"net/http"
	"time"
)

//go:embed web/page.html
var pageHTML []byte

//go:embed web/login.html
var loginHTML []byte

// pageCSP allows the page's own inline script and style and same-origin
// requests, nothing else.
const pageCSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

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
		Name: cookieName, Value: tok, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
		Expires: g.now().Add(30 * 24 * time.Hour),
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
