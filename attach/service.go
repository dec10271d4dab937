package attach

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/upload"
)

// nsUpload is the XEP-0363 namespace, version 0.
const nsUpload = upload.NS

// Service is an HTTP File Upload service.
type Service struct {
	// JID is the service's address, e.g. upload.example.org.
	JID jid.JID
	// MaxSize is the largest file the service accepts, in bytes, as it
	// announces it (max-file-size); 0 when it announces no limit.
	MaxSize int64
}

// discoInfo is the part of a disco#info result looked at here.
type discoInfo struct {
	Features []struct {
		Var string `xml:"var,attr"`
	} `xml:"http://jabber.org/protocol/disco#info feature"`
	Forms []struct {
		Fields []struct {
			Var    string   `xml:"var,attr"`
			Values []string `xml:"value"`
		} `xml:"field"`
	} `xml:"jabber:x:data x"`
}

// upload returns whether the entity offers XEP-0363 and its size limit.
func (i *discoInfo) upload() (ok bool, max int64) {
	for _, f := range i.Features {
		if f.Var == nsUpload {
			ok = true
		}
	}
	if !ok {
		return false, 0
	}
	for _, form := range i.Forms {
		formType, size := "", ""
		for _, f := range form.Fields {
			if len(f.Values) == 0 {
				continue
			}
			switch f.Var {
			case "FORM_TYPE":
				formType = f.Values[0]
			case "max-file-size":
				size = f.Values[0]
			}
		}
		if formType == nsUpload {
			return true, parseSize(size)
		}
	}
	return true, 0
}

// parseSize parses a size in bytes; anything but a positive decimal integer
// gives 0 (no limit known).
func parseSize(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

type discoItems struct {
	Items []struct {
		JID  string `xml:"jid,attr"`
		Node string `xml:"node,attr"`
	} `xml:"http://jabber.org/protocol/disco#items item"`
}

// maxItems bounds how many of the domain's items are asked for their
// features.
const maxItems = 32

func query(ns string) xml.TokenReader {
	return xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: ns, Local: "query"}})
}

// discover finds the upload service of domain: the first of its disco#items
// (without a node) whose disco#info has the XEP-0363 feature, else the
// domain itself.
func discover(ctx context.Context, q queryFunc, domain jid.JID) (Service, error) {
	var items discoItems
	if err := q(ctx, domain, query(discoNSItems), &items); err != nil {
		return Service{}, fmt.Errorf("attach: listing the services of %s: %w", domain, err)
	}
	var candidates []jid.JID
	for _, it := range items.Items {
		if it.Node != "" {
			continue
		}
		j, err := jid.Parse(it.JID)
		if err != nil || j.Equal(domain) {
			continue
		}
		candidates = append(candidates, j)
		if len(candidates) == maxItems {
			break
		}
	}
	candidates = append(candidates, domain)
	for _, j := range candidates {
		var info discoInfo
		err := q(ctx, j, query(discoNSInfo), &info)
		if ctx.Err() != nil {
			return Service{}, ctx.Err()
		}
		if err != nil {
			var ie *iqError
			if !errors.As(err, &ie) {
				return Service{}, fmt.Errorf("attach: asking %s for its features: %w", j, err)
			}
			continue // an item that does not answer disco#info is not the one
		}
		if ok, max := info.upload(); ok {
			return Service{JID: j, MaxSize: max}, nil
		}
	}
	return Service{}, fmt.Errorf("%w (asked %s and its %d services)", ErrNoService, domain, len(candidates)-1)
}

const (
	discoNSInfo  = disco.NSInfo
	discoNSItems = disco.NSItems
)
