package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cookieName is the cookie the status page's login form sets. It holds the
// token (base64url, so that any token fits in a cookie) and is accepted only
// on GET requests (see the package docs).
const cookieName = "xmpptrack_token"

// tokenSet holds the SHA-256 of every token, so that comparing a presented
// token costs the same whatever it is: its hash is compared with each known
// hash in constant time, and all of them are always compared.
type tokenSet struct {
	hashes [][32]byte
	ids    []string // idOf each hash, computed once
}

func newTokenSet(tokens []string) tokenSet {
	var s tokenSet
	for _, t := range tokens {
		if t = strings.TrimSpace(t); t != "" {
			h := hashToken(t)
			s.hashes = append(s.hashes, h)
			s.ids = append(s.ids, idOf(h))
		}
	}
	return s
}

// check returns the token's hash and whether it is valid.
func (s tokenSet) check(token string) ([32]byte, bool) {
	h, i := s.find(token)
	return h, i >= 0
}

// find returns the token's hash and its index among the valid tokens, or
// -1.
func (s tokenSet) find(token string) ([32]byte, int) {
	h := hashToken(token)
	found := -1
	for i := range s.hashes {
		eq := subtle.ConstantTimeCompare(h[:], s.hashes[i][:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if token == "" {
		return h, -1
	}
	return h, found
}

// hashToken returns the SHA-256 of token, hashed from a copy on the stack
// when it has at most 128 bytes: []byte(token) is on the stack only up to
// 32 bytes, and API tokens are often longer (a 43-byte token cost every
// request an allocation).
func hashToken(token string) [32]byte {
	var b [128]byte
	if len(token) <= len(b) {
		return sha256.Sum256(append(b[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}

// id returns the id of the token with hash h found at index i (see find).
func (s tokenSet) id(h [32]byte, i int) string {
	if i >= 0 {
		return s.ids[i]
	}
	return idOf(h)
}

// idOf returns a token's id: a short prefix of its hash, safe to log.
func idOf(h [32]byte) string { return hex.EncodeToString(h[:6]) }

// presented returns the bearer token of the request: the Authorization
// header, or on GET and HEAD requests the status page's cookie.
func presented(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, tok, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return ""
		}
		return strings.TrimSpace(tok)
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if c, err := r.Cookie(cookieName); err == nil {
			if tok, err := base64.RawURLEncoding.DecodeString(c.Value); err == nil {
				return string(tok)
			}
		}
	}
	return ""
}

// tokenID returns the id of the authenticated token of the request. It is
// computed again where it is needed rather than carried in the request's
// context, which would copy every request.
func (g *Gateway) tokenID(r *http.Request) string {
	return g.tokens.id(g.tokens.find(presented(r)))
}

// maxBuckets bounds the limiter's memory.
const maxBuckets = 100_000

// remoteHost is the request's peer address without the port.
func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// limiter is a token bucket per API token (and per address for requests
// without a valid token).
type limiter struct {
	rate  float64 // requests per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: make(map[string]*bucket)}
}

// allow takes one request from id's bucket; when empty it returns false and
// how long until one is available.
func (l *limiter) allow(id string) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[id]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			clear(l.buckets) // bounded memory against many addresses; all start full
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[id] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// authenticate wraps next: every request but GET /healthz needs a valid
// token, and each token is rate limited.
func (g *Gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		h, i := g.tokens.find(presented(r))
		if i < 0 {
			// Guessing tokens costs the guesser's address its rate limit.
			if ok, wait := g.limit.allow("addr:" + remoteHost(r)); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				writeProblem(w, newProblem("rate-limited", "slow down"))
				return
			}
			if r.URL.Path == "/" && r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
				g.loginPage(w, r)
				return
			}
			if r.URL.Path == "/login" && r.Method == http.MethodPost {
				g.login(w, r)
				return
			}
			writeProblem(w, newProblem("unauthorized", "send Authorization: Bearer <token>"))
			return
		}
		if g.limit.rate > 0 {
			if ok, wait := g.limit.allow(g.tokens.id(h, i)); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				writeProblem(w, newProblem("rate-limited", "slow down"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
