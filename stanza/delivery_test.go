package stanza_test

import (
	"errors"
	"testing"

	"github.com/xmpptrack/xmpptrack/stanza"
	xstanza "mellium.im/xmpp/stanza"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		cond xstanza.Condition
		want error
	}{
		{xstanza.RecipientUnavailable, stanza.ErrOffline},
		{xstanza.ServiceUnavailable, stanza.ErrNotAvailable},
		{xstanza.ResourceConstraint, stanza.ErrNotAvailable},
		{xstanza.InternalServerError, stanza.ErrNotAvailable},
		{xstanza.Forbidden, stanza.ErrPermissionDenied},
		{xstanza.NotAllowed, stanza.ErrPermissionDenied},
		{xstanza.NotAuthorized, stanza.ErrPermissionDenied},
		{"payment-required", stanza.ErrPermissionDenied},
		{xstanza.RegistrationRequired, stanza.ErrPermissionDenied},
		{xstanza.SubscriptionRequired, stanza.ErrPermissionDenied},
		{xstanza.PolicyViolation, stanza.ErrPermissionDenied},
		{xstanza.JIDMalformed, stanza.ErrInvalidHandle},
		{xstanza.ItemNotFound, stanza.ErrInvalidHandle},
		{xstanza.Gone, stanza.ErrInvalidHandle},
		{xstanza.Redirect, stanza.ErrInvalidHandle},
		{xstanza.FeatureNotImplemented, stanza.ErrNotImplemented},
		{xstanza.RemoteServerNotFound, stanza.ErrNetwork},
		{xstanza.RemoteServerTimeout, stanza.ErrNetwork},
		{xstanza.BadRequest, nil},
		{xstanza.Conflict, nil},
		{xstanza.NotAcceptable, nil},
		{xstanza.UnexpectedRequest, nil},
		{xstanza.UndefinedCondition, nil},
		{"no-such-condition", nil},
		{"", nil},
	} {
		se := xstanza.Error{Type: xstanza.Cancel, Condition: tc.cond, Text: map[string]string{"en": "why"}}
		de := stanza.Classify(se)
		if de == nil || de.Kind != tc.want {
			t.Errorf("Classify(%s).Kind = %v; want %v", tc.cond, de.Kind, tc.want)
			continue
		}
		var err error = de
		sentinels := []error{stanza.ErrOffline, stanza.ErrNotAvailable, stanza.ErrPermissionDenied,
			stanza.ErrInvalidHandle, stanza.ErrNotImplemented, stanza.ErrNetwork, stanza.ErrDisconnected}
		for _, s := range sentinels {
			if got := errors.Is(err, s); got != (s == tc.want) {
				t.Errorf("%s: errors.Is(err, %v) = %v", tc.cond, s, got)
			}
		}
		var got xstanza.Error
		if !errors.As(err, &got) || got.Condition != tc.cond || got.Text["en"] != "why" {
			t.Errorf("%s: errors.As to xstanza.Error: %v", tc.cond, got)
		}
		if !errors.Is(err, xstanza.Error{Condition: tc.cond}) || !errors.Is(err, xstanza.Error{Type: xstanza.Cancel}) {
			t.Errorf("%s: errors.Is with an xstanza.Error target fails", tc.cond)
		}
		if tc.cond != xstanza.Conflict && errors.Is(err, xstanza.Error{Condition: xstanza.Conflict}) {
			t.Errorf("%s: matches conflict", tc.cond)
		}
	}
}

func TestDeliveryErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		se   xstanza.Error
		want string
	}{
		{xstanza.Error{Condition: xstanza.RecipientUnavailable}, "stanza: recipient offline: recipient-unavailable"},
		{xstanza.Error{Condition: xstanza.BadRequest}, "stanza: delivery error: bad-request"},
		{xstanza.Error{}, "stanza: delivery error: undefined-condition"},
		{xstanza.Error{Condition: xstanza.Forbidden, Text: map[string]string{"de": "nein", "": "no"}}, "stanza: permission denied: forbidden: no"},
		{xstanza.Error{Condition: xstanza.Forbidden, Text: map[string]string{"fr": "non", "de": "nein"}}, "stanza: permission denied: forbidden: nein"},
	} {
		if got := stanza.Classify(tc.se).Error(); got != tc.want {
			t.Errorf("Error() = %q; want %q", got, tc.want)
		}
	}
	// ErrDisconnected is for the client's use.
	de := &stanza.DeliveryError{Kind: stanza.ErrDisconnected}
	if !errors.Is(de, stanza.ErrDisconnected) || de.Error() != "stanza: disconnected" {
		t.Error("errors.Is(ErrDisconnected) fails")
	}
}
