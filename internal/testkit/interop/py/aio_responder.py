"""aioxmpp responder peer for xmpptrack interoperability tests.

Logs in with aioxmpp 0.13, announces urn:xmpp:receipts (through aioxmpp's
DeliveryReceiptsService) and urn:xmpp:chat-markers:0, sends initial presence
and, for every chat or normal message with a body and an id:

* answers a XEP-0184 receipt request with <received/>. aioxmpp 0.13's
  DeliveryReceiptsService only tracks receipts for messages it sent; it does
  not answer requests, so the reply is built with aioxmpp.mdr.compose_receipt
  and sent here;
* after --mark-delay seconds ("never" disables it) sends a XEP-0333
  <displayed/> marker to the sender's bare JID. aioxmpp 0.13 has the marker
  XSOs (aioxmpp.misc) but no service, so the marker is built here.

Events on standard output (JSON lines): ready, message, receipt_sent,
marker_sent, receipt_received, marker_received, error, stopped.
"""

import argparse
import asyncio
import logging

import xtcommon
from xtcommon import emit
import xtaio

import aioxmpp
import aioxmpp.disco
import aioxmpp.dispatcher
import aioxmpp.mdr
import aioxmpp.misc

NS_MARKERS = "urn:xmpp:chat-markers:0"


class Responder:
    def __init__(self, args):
        self.args = args
        self.mark_delay = xtcommon.parse_delay(args.mark_delay)
        self.loop = asyncio.get_event_loop()
        self.finished = self.loop.create_future()
        self.tasks = set()
        self.stopping = False
        self.ready = self.loop.create_future()

        self.client = xtaio.make_client(args, aioxmpp.Client)
        self.client.summon(aioxmpp.mdr.DeliveryReceiptsService)
        disco = self.client.summon(aioxmpp.DiscoServer)
        disco.register_feature(NS_MARKERS)
        self.presence = self.client.summon(aioxmpp.PresenceServer)
        messages = self.client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
        for mtype in (aioxmpp.MessageType.CHAT, aioxmpp.MessageType.NORMAL):
            messages.register_callback(mtype, None, self.on_message)
        presences = self.client.summon(aioxmpp.dispatcher.SimplePresenceDispatcher)
        presences.register_callback(aioxmpp.PresenceType.AVAILABLE, None, self.on_presence)
        self.client.on_failure.connect(self.on_failure)
        self.client.on_stopped.connect(self.on_stopped)

    # -- life cycle -------------------------------------------------------

    async def run(self):
        self.presence.set_presence(aioxmpp.PresenceState(True))
        self.client.start()
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), self.args.timeout)
        except asyncio.TimeoutError:
            emit("error", error="not ready after %ss" % self.args.timeout)
            self.stop("timeout")
            return 1
        except Exception as exc:
            emit("error", error="login failed: %s: %s" % (type(exc).__name__, exc))
            return 1
        emit("ready", jid=str(self.client.local_jid), tls=bool(self.args.cafile))
        return await self.finished

    def stop(self, reason):
        logging.info("stopping: %s", reason)
        self.stopping = True
        for task in list(self.tasks):
            task.cancel()
        if self.client.running:
            self.client.stop()
        else:
            self.finish(0)

    def finish(self, code):
        if not self.finished.done():
            self.finished.set_result(code)

    def on_failure(self, exc):
        if not self.ready.done():
            self.ready.set_exception(exc)
        else:
            emit("error", error="client failed: %s: %s" % (type(exc).__name__, exc))
        self.finish(1)

    def on_stopped(self):
        if not self.stopping:
            emit("error", error="client stopped")
            self.finish(1)
        else:
            self.finish(0)

    def on_presence(self, pres):
        # The server echoes our own available presence once it has processed
        # it: from then on messages to the bare JID reach this resource.
        if pres.from_ == self.client.local_jid and not self.ready.done():
            self.ready.set_result(None)

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(self.report_failure)

    def report_failure(self, task):
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            emit("error", error="%s: %s" % (type(exc).__name__, exc))

    # -- messages -----------------------------------------------------------

    def on_message(self, msg):
        marker = getattr(msg, "xep0333_marker", None)
        if marker is not None:
            kind = type(marker).TAG[1]
            emit("marker_received", marker=kind, id=marker.id_, type=msg.type_.value,
                 **{"from": str(msg.from_)})
        body = xtaio.text_of(msg.body)
        if not body:
            return
        thread = msg.thread.identifier if msg.thread is not None else ""
        emit("message", **{
            "from": str(msg.from_),
            "to": str(msg.to),
            "id": msg.id_,
            "type": msg.type_.value,
            "body": body,
            "thread": thread,
            "receipt_requested": bool(msg.xep0184_request_receipt),
            "markable": bool(msg.xep0333_markable),
            "stanza_ids": [{"id": sid.id_ or "", "by": str(sid.by) if sid.by else ""}
                           for sid in getattr(msg, "xep0359_stanza_ids", [])],
        })
        if not msg.id_:
            emit("error", error="message without id from %s: not answered" % msg.from_)
            return
        if msg.xep0184_request_receipt:
            receipt = aioxmpp.mdr.compose_receipt(msg)
            self.client.enqueue(receipt)
            emit("receipt_sent", id=msg.id_, to=str(receipt.to))
        if self.mark_delay is None:
            return
        if self.args.require_markable and not msg.xep0333_markable:
            return
        self.spawn(self.mark(msg.from_.bare(), msg.id_, thread))

    async def mark(self, to, marked_id, thread):
        if self.mark_delay:
            await asyncio.sleep(self.mark_delay)
        out = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=to)
        if thread:
            out.thread = aioxmpp.stanza.Thread()
            out.thread.identifier = thread
        out.xep0333_marker = aioxmpp.misc.DisplayedMarker()
        out.xep0333_marker.id_ = marked_id
        self.client.enqueue(out)
        emit("marker_sent", id=marked_id, message_id=marked_id, to=str(to), type="chat", by="message-id")


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    xtcommon.add_login_arguments(parser)
    parser.add_argument("--mark-delay", default=xtcommon.env_default("XT_MARK_DELAY", "0"),
                        help='seconds before the displayed marker, or "never"')
    parser.add_argument("--require-markable", action="store_true",
                        help="mark only messages carrying <markable/>")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds to wait for login")
    args = parser.parse_args()
    xtcommon.check_login_arguments(parser, args)
    xtcommon.setup_logging(args.log_level)

    peer = Responder(args)
    xtcommon.install_stop_handlers(asyncio.get_event_loop(), peer.stop)
    code = await peer.run()
    emit("stopped", code=code)
    return code


if __name__ == "__main__":
    xtcommon.run(main)
