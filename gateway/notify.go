package gateway

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"time"

	"mellium.im/xmlstream"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// notifyRequest is the body of POST /v1/notify.
type notifyRequest struct {
	To       string `json:"to"`
	Title    string `json:"title"`
	Body     string `json:"body"`
	Priority *int   `json:"priority,omitempty"`
	From     string `json:"from,omitempty"`
	Type     string `json:"type,omitempty"`
	Channel  string `json:"channel,omitempty"`
}

// Priorities of POST /v1/notify (see the package docs).
var priorityWindows = [4]time.Duration{time.Minute, 0, time.Hour, 24 * time.Hour}

const nsHints = "urn:xmpp:hints"

func (g *Gateway) notify(w http.ResponseWriter, r *http.Request) {
	var req notifyRequest
	if p := decodeBody(w, r, g.cfg.MaxBody, &req); p != nil {
		writeProblem(w, p)
		return
	}
	var o outgoing
	if p := g.validateNotify(&req, &o); p != nil {
		writeProblem(w, p)
		return
	}
	g.submit(w, r, &o, func() [32]byte { return requestHash("notify", &req) })
}

func (g *Gateway) validateNotify(req *notifyRequest, o *outgoing) *problem {
	if p := g.validateCommon(common{req.To, req.From, req.Type, req.Channel}, o); p != nil {
		return p
	}
	if req.Title == "" && req.Body == "" {
		return fieldProblem("missing-field", "title", `"title" or "body" is required`)
	}
	if p := validText("title", req.Title); p != nil {
		return p
	}
	if p := validText("body", req.Body); p != nil {
		return p
	}
	prio := 1
	if req.Priority != nil {
		prio = *req.Priority
		if prio < 0 || prio > 3 {
			return fieldProblem("invalid-field", "priority", "priority is 0, 1, 2 or 3")
		}
	}
	o.msg.Body = req.Body
	if o.msg.Body == "" {
		o.msg.Body = req.Title
	}
	o.msg.Window = priorityWindows[prio]
	o.msg.Payload = notifyPayload(req.Title, prio)
	o.title, o.prio = req.Title, &prio
	return nil
}

// notifyPayload is the subject (the title) and the XEP-0334 hint of the
// priority: no-store for 0, store for 2 and 3.
func notifyPayload(title string, prio int) xml.TokenReader {
	var rs []xml.TokenReader
	if title != "" {
		rs = append(rs, xmlstream.Wrap(xmlstream.Token(xml.CharData(title)), xml.StartElement{Name: xml.Name{Local: "subject"}}))
	}
	switch {
	case prio == 0:
		rs = append(rs, xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: nsHints, Local: "no-store"}}))
	case prio >= 2:
		rs = append(rs, xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: nsHints, Local: "store"}}))
	}
	return xmlstream.MultiReader(rs...)
}

// testRequest is the body of POST /v1/test.
type testRequest struct {
	To      string    `json:"to"`
	From    string    `json:"from,omitempty"`
	Type    string    `json:"type,omitempty"`
	Timeout *Duration `json:"timeout,omitempty"`
}

// testResponse answers a successful POST /v1/test.
type testResponse struct {
	ID      string   `json:"id"`
	State   State    `json:"state"`
	Cursor  Cursor   `json:"cursor"`
	Elapsed Duration `json:"elapsed"`
}

func (g *Gateway) test(w http.ResponseWriter, r *http.Request) {
	var req testRequest
	if p := decodeBody(w, r, g.cfg.MaxBody, &req); p != nil {
		writeProblem(w, p)
		return
	}
	var o outgoing
	if p := g.validateCommon(common{req.To, req.From, req.Type, "test"}, &o); p != nil {
		writeProblem(w, p)
		return
	}
	if p := g.validateWait("delivered", req.Timeout, &o); p != nil {
		if p.Field == "wait_timeout" {
			p.Field = "timeout"
		}
		writeProblem(w, p)
		return
	}
	start := g.now()
	o.msg.Body = fmt.Sprintf("xmpptrack gateway test message (%s)", start.UTC().Format(time.RFC3339))
	st, _, p := g.create(r.Context(), &o, "", [32]byte{})
	if p != nil {
		writeProblem(w, p)
		return
	}
	if _, _, p := g.dispatch(&o); p != nil {
		writeProblem(w, p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), o.waitFor)
	defer cancel()
	stop := context.AfterFunc(g.ctx, cancel) // Close ends the wait as its timeout would
	defer stop()
	cur, reached := g.waitState(ctx, st.ID, tracking.DeliveredToRecipient)
	if cur == nil {
		cur = &st
	}
	if reached {
		writeJSON(w, http.StatusOK, testResponse{ID: cur.ID, State: cur.State, Cursor: cur.Cursor, Elapsed: Duration(g.now().Sub(start))})
		return
	}
	name := "test-timeout"
	if s := tracking.MessageState(cur.State); s > tracking.SeenByRecipient || cur.Settled {
		name = "test-failed"
	}
	p = newProblem(name, fmt.Sprintf("the test message is %s after %s", cur.State, g.now().Sub(start).Round(time.Millisecond)))
	p.ID, p.State = cur.ID, cur.State.String()
	writeProblem(w, p)
}
