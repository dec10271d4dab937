package stanza

import xstanza "mellium.im/xmpp/stanza"

// condition maps the local name of a condition element to the RFC 6120
// constant. Unknown names become undefined-condition, as RFC 6120 §8.3.2
// requires, which also keeps peer-chosen strings out of decoded values.
func condition(local string) xstanza.Condition {
	switch c := xstanza.Condition(local); c {
	case xstanza.BadRequest, xstanza.Conflict, xstanza.FeatureNotImplemented,
		xstanza.Forbidden, xstanza.Gone, xstanza.InternalServerError,
		xstanza.ItemNotFound, xstanza.JIDMalformed, xstanza.NotAcceptable,
		xstanza.NotAllowed, xstanza.NotAuthorized, xstanza.PolicyViolation,
		xstanza.RecipientUnavailable, xstanza.Redirect,
		xstanza.RegistrationRequired, xstanza.RemoteServerNotFound,
		xstanza.RemoteServerTimeout, xstanza.ResourceConstraint,
		xstanza.ServiceUnavailable, xstanza.SubscriptionRequired,
		xstanza.UndefinedCondition, xstanza.UnexpectedRequest:
		return c
	case "payment-required":
		// RFC 3920 condition, still sent by some servers.
		return c
	}
	return xstanza.UndefinedCondition
}
