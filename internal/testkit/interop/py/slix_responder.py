"""slixmpp responder peer for xmpptrack interoperability tests.

Logs in, enables XEP-0184 (receipts, answered automatically by slixmpp's
plugin) and XEP-0333 (chat markers), sends initial presence and, for every
chat or normal message with a body and an id, sends a <displayed/> marker to
the sender's bare JID after --mark-delay seconds ("never" disables markers).
With --room it also joins a multi-user chat room; with --room-markers it
marks group chat messages of other occupants, referencing the room's
<stanza-id by=room/> when the room announces urn:xmpp:sid:0 (XEP-0333 §4.3)
and the message id otherwise.

Events on standard output (JSON lines): ready, message, receipt_sent,
marker_sent, marker_received, receipt_received, error, stopped.
"""

import argparse
import asyncio
import logging
import ssl

import xtcommon
from xtcommon import emit

import slixmpp
from slixmpp import JID

NS_SID = "urn:xmpp:sid:0"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_MARKERS = "urn:xmpp:chat-markers:0"


def stanza_ids(msg):
    """All XEP-0359 stanza-ids of a message as (id, by) pairs."""
    out = []
    for el in msg.xml.findall("{%s}stanza-id" % NS_SID):
        out.append((el.get("id", ""), el.get("by", "")))
    return out


class Responder(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.mark_delay = xtcommon.parse_delay(args.mark_delay)
        self.room = JID(args.room) if args.room else None
        self.room_sid = False
        self.stopping = False
        self.ready = False
        self.tasks = set()

        self.register_plugin("xep_0030")
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0184", {"auto_ack": True, "auto_request": False})
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0333")
        self.register_plugin("xep_0359")

        if args.cafile:
            # STARTTLS, trusting only the given certificate. slixmpp checks the
            # host name against default_domain, which stays the JID's domain
            # when the address is an IP literal.
            ctx = ssl.create_default_context(cafile=args.cafile)
            ctx.check_hostname = True
            ctx.verify_mode = ssl.CERT_REQUIRED
            self.ssl_context = ctx
            self.ca_certs = args.cafile
        else:
            # Plaintext on loopback: never STARTTLS. SCRAM works unencrypted by
            # default; PLAIN only when allowed explicitly.
            self["feature_mechanisms"].unencrypted_plain = True

        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("groupchat_message", self.on_groupchat)
        self.add_event_handler("receipt_received", self.on_receipt)
        self.add_event_handler("marker", self.on_marker)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("ssl_invalid_chain", self.on_ssl_invalid)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_filter("out", self.out_filter)
        self.finished = asyncio.get_event_loop().create_future()

    # -- life cycle -------------------------------------------------------

    def start(self):
        tls = bool(self.args.cafile)
        self.connect((self.args.host, self.args.port),
                     force_starttls=tls, disable_starttls=not tls)

    def finish(self, code):
        if not self.finished.done():
            self.finished.set_result(code)

    def stop(self, reason):
        self.stopping = True
        logging.info("stopping: %s", reason)
        for task in list(self.tasks):
            task.cancel()
        if self.transport:
            self.disconnect(wait=1.0, reason=reason)
        else:
            self.finish(0)

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(self.report_failure)
        return task

    def report_failure(self, task):
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            emit("error", error="%s: %s" % (type(exc).__name__, exc))

    async def on_session_start(self, _event):
        # Ready once the server echoes our available presence: from then on
        # messages to the bare JID reach this resource.
        echoed = asyncio.get_event_loop().create_future()

        def on_presence(pres):
            if pres["from"] == self.boundjid and not echoed.done():
                echoed.set_result(None)

        self.add_event_handler("presence_available", on_presence)
        try:
            self.send_presence()
            await asyncio.wait_for(echoed, self.args.timeout)
        except asyncio.TimeoutError:
            emit("error", error="no echo of our presence after %ss" % self.args.timeout)
            self.finish(1)
            self.stop("presence timeout")
            return
        finally:
            self.del_event_handler("presence_available", on_presence)
        if self.room:
            try:
                await self.join_room()
            except Exception as exc:  # reported, then the peer stops
                emit("error", error="joining %s: %s: %s" % (self.room, type(exc).__name__, exc))
                self.finish(1)
                self.stop("join failed")
                return
        self.ready = True
        fields = {"jid": str(self.boundjid), "tls": bool(self.args.cafile)}
        if self.room:
            fields.update(room=str(self.room), nick=self.args.nick, room_sid=self.room_sid)
        emit("ready", **fields)

    async def join_room(self):
        joined = asyncio.get_event_loop().create_future()
        room = self.room.bare

        def on_self(pres):
            if not joined.done():
                joined.set_result(pres)

        self.add_event_handler("muc::%s::self-presence" % room, on_self)
        self.add_event_handler("muc::%s::presence-error" % room, on_self)
        try:
            self.plugin["xep_0045"].join_muc(JID(room), self.args.nick, maxhistory="0")
            pres = await asyncio.wait_for(joined, self.args.timeout)
        finally:
            self.del_event_handler("muc::%s::self-presence" % room, on_self)
            self.del_event_handler("muc::%s::presence-error" % room, on_self)
        if pres["type"] == "error":
            raise RuntimeError("presence error: %s" % pres["error"]["condition"])
        info = await self.plugin["xep_0030"].get_info(jid=JID(room), timeout=self.args.timeout)
        self.room_sid = NS_SID in info["disco_info"]["features"]

    def on_failed_auth(self, _event):
        emit("error", error="authentication failed")
        self.finish(1)
        self.stop("authentication failed")

    def on_connection_failed(self, err):
        emit("error", error="connection failed: %s" % err)
        self.finish(1)
        self.stopping = True
        self.cancel_connection_attempt()

    def on_ssl_invalid(self, err):
        emit("error", error="TLS certificate rejected: %s" % err)
        self.finish(1)
        self.stop("certificate rejected")

    def on_disconnected(self, reason):
        if not self.stopping:
            emit("error", error="disconnected: %s" % reason)
            self.finish(1)
        else:
            self.finish(0)

    # -- observation --------------------------------------------------------

    def out_filter(self, stanza):
        if isinstance(stanza, slixmpp.Message):
            if stanza.xml.find("{%s}received" % NS_RECEIPTS) is not None:
                emit("receipt_sent", id=stanza["receipt"], to=str(stanza["to"]))
        return stanza

    def on_receipt(self, msg):
        emit("receipt_received", id=msg["receipt"], **{"from": str(msg["from"])})

    def on_marker(self, msg):
        for kind in ("displayed", "received", "acknowledged"):
            el = msg.xml.find("{%s}%s" % (NS_MARKERS, kind))
            if el is not None:
                emit("marker_received", marker=kind, id=el.get("id", ""),
                     type=msg["type"], **{"from": str(msg["from"])})

    def describe(self, msg):
        return {
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "id": msg["id"],
            "type": msg["type"],
            "body": msg["body"],
            "thread": msg["thread"],
            "receipt_requested": msg.xml.find("{%s}request" % NS_RECEIPTS) is not None,
            "markable": msg.xml.find("{%s}markable" % NS_MARKERS) is not None,
            "stanza_ids": [{"id": i, "by": b} for i, b in stanza_ids(msg)],
        }

    def on_message(self, msg):
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        emit("message", **self.describe(msg))
        if not msg["id"]:
            emit("error", error="message without id from %s: not marked" % msg["from"])
            return
        if self.args.require_markable and msg.xml.find("{%s}markable" % NS_MARKERS) is None:
            return
        if self.mark_delay is None:
            return
        # A coroutine: it runs after slixmpp's receipt handler has queued the
        # receipt, so the receipt always goes out first.
        to = JID(msg["from"].bare)
        if self.room and to == JID(self.room.bare):
            to = msg["from"]  # a private message through the room: answer the occupant
        self.spawn(self.mark(to, msg["id"], msg["thread"], "chat", msg["id"]))

    def on_groupchat(self, msg):
        if not self.room or msg["from"].bare != self.room.bare or not msg["body"]:
            return
        if msg.xml.find("{urn:xmpp:delay}delay") is not None:
            return  # history
        if msg["mucnick"] == self.plugin["xep_0045"].our_nicks.get(self.room.bare, self.args.nick):
            return  # our own reflection
        emit("message", **self.describe(msg))
        if not self.args.room_markers or self.mark_delay is None:
            return
        if self.args.require_markable and msg.xml.find("{%s}markable" % NS_MARKERS) is None:
            return
        marked_id, by = msg["id"], "message-id"
        if self.room_sid:
            sids = [i for i, b in stanza_ids(msg) if b == self.room.bare]
            if sids:
                marked_id, by = sids[0], "stanza-id"
            else:
                emit("error", error="room announces %s but message %s has no stanza-id by the room" % (NS_SID, msg["id"]))
        if not marked_id:
            emit("error", error="group chat message without id: not marked")
            return
        self.spawn(self.mark(JID(self.room.bare), marked_id, msg["thread"], "groupchat", msg["id"], by))

    async def mark(self, to, marked_id, thread, mtype, message_id, by="message-id"):
        # Yield once even without a delay, so that every handler of the
        # incoming message (the receipt among them) has run.
        await asyncio.sleep(self.mark_delay or 0)
        out = self.make_message(mto=to, mtype=mtype)
        if thread:
            out["thread"] = thread
        out["displayed"]["id"] = marked_id
        out.send()
        emit("marker_sent", id=marked_id, message_id=message_id, to=str(to), type=mtype, by=by)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    xtcommon.add_login_arguments(parser)
    parser.add_argument("--mark-delay", default=xtcommon.env_default("XT_MARK_DELAY", "0"),
                        help='seconds before the displayed marker, or "never"')
    parser.add_argument("--require-markable", action="store_true",
                        help="mark only messages carrying <markable/>")
    parser.add_argument("--room", help="bare JID of a room to join")
    parser.add_argument("--nick", default="slixmpp", help="nickname in --room")
    parser.add_argument("--room-markers", action="store_true",
                        help="send displayed markers for group chat messages")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds to wait for a room join or disco reply")
    args = parser.parse_args()
    xtcommon.check_login_arguments(parser, args)
    xtcommon.setup_logging(args.log_level)

    loop = asyncio.get_event_loop()
    peer = Responder(args)
    xtcommon.install_stop_handlers(loop, peer.stop)
    peer.start()
    code = await peer.finished
    emit("stopped", code=code)
    return code


if __name__ == "__main__":
    xtcommon.run(main)
