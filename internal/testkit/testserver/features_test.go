package testserver

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// element is any stanza, decoded loosely.
type element struct {
	XMLName xml.Name
	From    string `xml:"from,attr"`
	Type    string `xml:"type,attr"`
	Body    string `xml:"body"`
	Status  []struct {
		Code string `xml:"code,attr"`
	} `xml:"http://jabber.org/protocol/muc#user x>status"`
	StanzaIDs []struct {
		ID string `xml:"id,attr"`
		By string `xml:"by,attr"`
	} `xml:"urn:xmpp:sid:0 stanza-id"`
}

// TestFeatures checks what the package documentation promises of each server:
// stream management, carbons, MAM on or off, and an unlocked MUC service with
// XEP-0359 stanza-ids on group chat messages.
func TestFeatures(t *testing.T) {
	for _, kind := range Kinds() {
		for _, noMAM := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/NoMAM=%v", kind, noMAM), func(t *testing.T) {
				t.Parallel()
				srv := Start(t, kind, Options{Accounts: []string{"alice"}, NoMAM: noMAM})
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				defer cancel()

				var d net.Dialer
				conn, err := d.DialContext(ctx, "tcp", srv.Addr())
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				s, err := xmpp.NewClientSession(ctx, srv.JID("alice"), conn,
					xmpp.StartTLS(srv.TLSConfig()),
					xmpp.SASL("", srv.Password("alice"), sasl.ScramSha1),
					xmpp.BindResource())
				if err != nil {
					t.Fatalf("login: %v", err)
				}
				if _, ok := s.Feature("urn:xmpp:sm:3"); !ok {
					t.Error("stream management (urn:xmpp:sm:3) not offered")
				}

				elems := make(chan element, 16)
				served := make(chan struct{})
				go func() {
					defer close(served)
					s.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
						var e element
						d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r))
						if err := d.Decode(&e); err != nil {
							return err
						}
						select {
						case elems <- e:
						default:
						}
						return nil
					}))
				}()
				defer func() {
					s.Close()
					<-served
				}()

				features := func(to jid.JID) []string {
					t.Helper()
					info, err := disco.GetInfo(ctx, "", to, s)
					if err != nil {
						t.Fatalf("disco#info %s: %v", to, err)
					}
					var vars []string
					for _, f := range info.Features {
						vars = append(vars, f.Var)
					}
					return vars
				}
				if f := features(jid.MustParse(srv.Domain())); !slices.Contains(f, "urn:xmpp:carbons:2") {
					t.Errorf("server features %v lack carbons", f)
				}
				if f := features(srv.JID("alice")); slices.Contains(f, "urn:xmpp:mam:2") != srv.MAM() {
					t.Errorf("account features %v: MAM advertised = %v, want %v", f, !srv.MAM(), srv.MAM())
				}
				if f := features(jid.MustParse(srv.MUCDomain())); !slices.Contains(f, "http://jabber.org/protocol/muc") {
					t.Errorf("MUC service features %v lack muc", f)
				}

				// Join a new room and talk at once: the room must not be locked.
				room := jid.MustParse("room@" + srv.MUCDomain())
				occupant, _ := room.WithResource("alice")
				join := stanza.Presence{To: occupant}.Wrap(xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "http://jabber.org/protocol/muc", Local: "x"}}))
				if err := s.Send(ctx, join); err != nil {
					t.Fatal(err)
				}
				self := wait(ctx, t, elems, func(e element) bool {
					return e.XMLName.Local == "presence" && e.From == occupant.String() && len(e.Status) > 0
				})
				var codes []string
				for _, st := range self.Status {
					codes = append(codes, st.Code)
				}
				if !slices.Contains(codes, "110") || !slices.Contains(codes, "201") {
					t.Errorf("self-presence status codes %v, want 110 and 201", codes)
				}
				msg := stanza.Message{To: room, Type: stanza.GroupChatMessage, ID: "m1"}
				if err := s.Send(ctx, msg.Wrap(xmlstream.Wrap(xmlstream.Token(xml.CharData("hi room")), xml.StartElement{Name: xml.Name{Local: "body"}}))); err != nil {
					t.Fatal(err)
				}
				refl := wait(ctx, t, elems, func(e element) bool {
					return e.XMLName.Local == "message" && e.Body == "hi room" || e.Type == "error"
				})
				if refl.Type != "groupchat" {
					t.Fatalf("reflection %+v", refl)
				}
				hasID := slices.ContainsFunc(refl.StanzaIDs, func(id struct {
					ID string `xml:"id,attr"`
					By string `xml:"by,attr"`
				}) bool {
					return id.By == room.String() && id.ID != ""
				})
				// Documented: without MAM, ejabberd adds no stanza-id to rooms.
				wantID := srv.MAM() || kind == Prosody
				if hasID != wantID {
					t.Errorf("reflection stanza-ids %+v: by room = %v, want %v", refl.StanzaIDs, hasID, wantID)
				}
			})
		}
	}
}

func wait(ctx context.Context, t *testing.T, ch <-chan element, match func(element) bool) element {
	t.Helper()
	for {
		select {
		case e := <-ch:
			if match(e) {
				return e
			}
		case <-ctx.Done():
			t.Fatalf("waiting: %v", ctx.Err())
		}
	}
}
