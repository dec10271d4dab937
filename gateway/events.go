package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// feedQuery is a parsed GET /v1/events query.
type feedQuery struct {
	after    Cursor
	channels []string
	limit    int
	wait     time.Duration
}

// eventsResponse answers a long poll: the events, and the cursor to pass as
// after next time (past events that the channel filter left out).
type eventsResponse struct {
	Events []Event `json:"events"`
	Cursor Cursor  `json:"cursor"`
}

const sseKeepAlive = 15 * time.Second

func (g *Gateway) parseFeedQuery(r *http.Request) (feedQuery, *problem) {
	q := feedQuery{limit: defaultLimit, wait: min(30*time.Second, g.cfg.MaxWait)}
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// URL.Query drops what does not parse (a ';' in a pair, say): a
		// channels filter would silently become all channels.
		return q, newProblem("invalid-query", fmt.Sprintf("the query does not parse: %v", err))
	}
	for k, v := range vals {
		switch k {
		case "after", "channels", "limit", "wait":
			if len(v) != 1 {
				return q, fieldProblem("invalid-query", k, k+" is given more than once")
			}
		default:
			return q, fieldProblem("invalid-query", k, fmt.Sprintf("unknown query parameter %q", k))
		}
	}
	head, err := g.rec.head(r.Context())
	if err != nil {
		return q, newProblem("unavailable", "the record is not available")
	}
	q.after = head
	after, hasAfter := vals["after"]
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		after, hasAfter = []string{id}, true
	}
	if hasAfter {
		c, err := parseCursor(after[0])
		if err != nil {
			return q, fieldProblem("invalid-cursor", "after", fmt.Sprintf("%q is not a cursor", after[0]))
		}
		if c > head {
			return q, fieldProblem("invalid-cursor", "after", "the cursor is ahead of the newest change "+head.String())
		}
		q.after = c
	}
	if v, ok := vals["channels"]; ok {
		q.channels = trimList(v[0])
		if len(q.channels) == 0 {
			// Not all channels: a filter that names none is a mistake.
			return q, fieldProblem("invalid-query", "channels", "channels names no channel")
		}
		for _, c := range q.channels {
			if !channelRE.MatchString(c) {
				return q, fieldProblem("invalid-query", "channels", fmt.Sprintf("%q is not a channel name", c))
			}
		}
	}
	if v, ok := vals["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > maxLimit {
			return q, fieldProblem("invalid-query", "limit", fmt.Sprintf("limit is a number from 1 to %d", maxLimit))
		}
		q.limit = n
	}
	if v, ok := vals["wait"]; ok {
		d, err := time.ParseDuration(v[0])
		if err != nil || d < 0 {
			return q, fieldProblem("invalid-duration", "wait", fmt.Sprintf("%q is not a non-negative Go duration", v[0]))
		}
		if d > g.cfg.MaxWait {
			p := fieldProblem("wait-too-long", "wait", "wait is at most "+g.cfg.MaxWait.String())
			p.Limit = g.cfg.MaxWait.String()
			return q, p
		}
		q.wait = d
	}
	return q, nil
}

func (g *Gateway) events(w http.ResponseWriter, r *http.Request) {
	q, p := g.parseFeedQuery(r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		g.stream(w, r, q)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), q.wait)
	defer cancel()
	stop := context.AfterFunc(g.ctx, cancel)
	defer stop()
	after := q.after
	// A page the record cut short (see record.changes) is read on, also
	// once the wait ended, so that an empty answer still means the head.
	for r.Context().Err() == nil {
		evs, next, err := g.rec.changes(r.Context(), after, q.channels, q.limit)
		if err != nil {
			g.feedProblem(w, err)
			return
		}
		after = next
		if len(evs) == 0 && q.wait == 0 {
			if h, err := g.rec.head(r.Context()); err == nil && h > next {
				continue
			}
		}
		if len(evs) > 0 || q.wait == 0 {
			writeJSON(w, http.StatusOK, eventsResponse{Events: nonNil(evs), Cursor: next})
			return
		}
		if err := g.rec.wait(ctx, next); err != nil {
			writeJSON(w, http.StatusOK, eventsResponse{Events: []Event{}, Cursor: next})
			return
		}
	}
}

func nonNil(evs []Event) []Event {
	if evs == nil {
		return []Event{}
	}
	return evs
}

func (g *Gateway) feedProblem(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errCursorFuture):
		writeProblem(w, fieldProblem("invalid-cursor", "after", "the cursor is ahead of the newest change"))
	case errors.Is(err, errCursorExpired):
		writeProblem(w, fieldProblem("cursor-expired", "after", "start again from after=0"))
	default:
		g.recordProblem(w, err)
	}
}

// stream serves the feed as Server-Sent Events: each event's id is its
// cursor, so that a reconnecting EventSource resumes with Last-Event-ID.
func (g *Gateway) stream(w http.ResponseWriter, r *http.Request, q feedQuery) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	// Check the cursor before committing to a stream.
	evs, next, err := g.rec.changes(r.Context(), q.after, q.channels, q.limit)
	if err != nil {
		g.feedProblem(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n\n")
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(g.ctx, cancel)
	defer stop()
	for {
		for _, ev := range evs {
			b, _ := json.Marshal(ev)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: change\ndata: %s\n\n", ev.Cursor, b); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
		wctx, wcancel := context.WithTimeout(ctx, sseKeepAlive)
		err := g.rec.wait(wctx, next)
		wcancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			evs = nil
			continue
		}
		evs, next, err = g.rec.changes(ctx, next, q.channels, q.limit)
		if err != nil {
			// The stream fell behind what the record keeps: end it, the
			// client reconnects with Last-Event-ID and gets the problem.
			return
		}
	}
}
