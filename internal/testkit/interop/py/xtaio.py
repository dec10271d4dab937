"""aioxmpp 0.13 connection helpers of the xmpptrack interoperability peers.

aioxmpp always upgrades with STARTTLS when the server offers it, and its
default verifier trusts only the system store. Two ways in are provided:

* cafile given: STARTTLS with a verifier that trusts only that certificate
  (and still checks that it names the JID's domain);
* no cafile: a plaintext connector that never sends <starttls/> (loopback
  test servers only). aiosasl then offers SCRAM but not PLAIN.
"""

import asyncio
import datetime

import OpenSSL.SSL

import aioxmpp
import aioxmpp.connector
import aioxmpp.node
import aioxmpp.protocol
import aioxmpp.security_layer


class PlaintextConnector(aioxmpp.connector.BaseConnector):
    """A connector that keeps the stream unencrypted."""

    @property
    def tls_supported(self):
        return False

    @property
    def dane_supported(self):
        return False

    async def connect(self, loop, metadata, domain, host, port,
                      negotiation_timeout, base_logger=None):
        features = loop.create_future()
        stream = aioxmpp.protocol.XMLStream(
            to=domain,
            features_future=features,
            base_logger=base_logger,
        )
        try:
            transport, _ = await loop.create_connection(lambda: stream, host, port)
        except BaseException:
            stream.abort()
            raise
        stream.deadtime_hard_limit = datetime.timedelta(seconds=negotiation_timeout)
        return transport, stream, await features


class PinnedCAVerifier(aioxmpp.security_layer.PKIXCertificateVerifier):
    """PKIX verification against one CA file instead of the system store."""

    cafile = None

    def setup_context(self, ctx, transport):
        self.transport = transport
        ctx.set_verify(OpenSSL.SSL.VERIFY_PEER, self.verify_callback)
        ctx.load_verify_locations(self.cafile)


def security_layer(password, cafile):
    async def provide_password(_jid, attempt):
        return password if attempt == 0 else None

    providers = (aioxmpp.security_layer.PasswordSASLProvider(provide_password),)
    if cafile:
        verifier = type("Verifier", (PinnedCAVerifier,), {"cafile": cafile})
        return aioxmpp.security_layer.SecurityLayer(
            aioxmpp.security_layer.default_ssl_context, verifier, True, providers)
    return aioxmpp.security_layer.SecurityLayer(
        aioxmpp.security_layer.default_ssl_context,
        aioxmpp.security_layer.PKIXCertificateVerifier,
        False,
        providers,
    )


async def _no_discovery(domain, loop=None, logger=None):
    return []


def make_client(args, client_class=aioxmpp.Client):
    """A client for args.jid that connects only to args.host:args.port.

    aioxmpp falls back to DNS discovery (SRV, then the domain itself on port
    5222) when the override_peer options fail: for a test peer that could
    reach a system server on localhost:5222, so discovery is switched off.
    """
    aioxmpp.node.discover_connectors = _no_discovery
    jid = aioxmpp.JID.fromstr(args.jid)
    if args.cafile:
        connector = aioxmpp.connector.STARTTLSConnector()
    else:
        connector = PlaintextConnector()
    return client_class(
        jid,
        security_layer(args.password, args.cafile),
        override_peer=[(args.host, args.port, connector)],
        max_initial_attempts=1,
    )


def text_of(body):
    """The text of a LanguageMap body, or ""."""
    if not body:
        return ""
    try:
        return body.any()
    except (KeyError, ValueError):
        return ""


async def wait_established(client, timeout):
    """Wait until the client's stream is established or has failed."""
    loop = asyncio.get_event_loop()
    done = loop.create_future()

    def established():
        if not done.done():
            done.set_result(None)
        return True  # disconnect the signal handler

    def failed(exc):
        if not done.done():
            done.set_exception(exc)
        return True

    client.on_stream_established.connect(established)
    client.on_failure.connect(failed)
    if client.established:
        return
    await asyncio.wait_for(done, timeout)
