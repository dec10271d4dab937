"""aioxmpp 0.13 sender benchmark for xmpptrack.

Sends --count chat messages to --to (a running responder), each with a
XEP-0184 receipt request and a XEP-0333 <markable/>, and tracks each with an
aioxmpp.tracking.MessageTracker driven by BasicTrackingService (stream
management acks: DELIVERED_TO_SERVER) and DeliveryReceiptsService (receipts:
DELIVERED_TO_RECIPIENT). aioxmpp 0.13 has no chat marker service, so
<displayed/> markers are matched to trackers here and move them to
SEEN_BY_RECIPIENT through MessageTracker._set_state, the hook aioxmpp's own
tracking services use. As XEP-0333 says, a marker also covers every
earlier message (the responder may send one marker for several).

DeliveryReceiptsService matches a receipt by (the message's "to", id) against
(the receipt's "from", id): address --to as the responder's full JID, or the
receipts will not be matched.

Prints JSON lines: ready, then one "result" object at the end with the
times (seconds from the first send) until every tracker reached
DELIVERED_TO_SERVER, DELIVERED_TO_RECIPIENT and SEEN_BY_RECIPIENT (or a later
state), CPU seconds and peak RSS.
"""

import argparse
import asyncio
import logging
import platform
import resource
import time

import xtcommon
from xtcommon import emit
import xtaio

import aioxmpp
import aioxmpp.dispatcher
import aioxmpp.mdr
import aioxmpp.misc
import aioxmpp.tracking
from aioxmpp.tracking import MessageState

# For each milestone, the states that mean it has been reached or passed.
MILESTONES = {
    "to_server": {MessageState.DELIVERED_TO_SERVER, MessageState.DELIVERED_TO_RECIPIENT,
                  MessageState.SEEN_BY_RECIPIENT},
    "to_recipient": {MessageState.DELIVERED_TO_RECIPIENT, MessageState.SEEN_BY_RECIPIENT},
    "seen": {MessageState.SEEN_BY_RECIPIENT},
}
FAILED = {MessageState.ERROR, MessageState.ABORTED}


def cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


class Bench:
    def __init__(self, args):
        self.args = args
        self.loop = asyncio.get_event_loop()
        self.ready = self.loop.create_future()
        self.done = self.loop.create_future()
        self.stopping = False
        self.client = xtaio.make_client(args, aioxmpp.Client)
        self.basic = self.client.summon(aioxmpp.tracking.BasicTrackingService)
        self.receipts = self.client.summon(aioxmpp.mdr.DeliveryReceiptsService)
        self.presence = self.client.summon(aioxmpp.PresenceServer)
        messages = self.client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
        messages.register_callback(aioxmpp.MessageType.CHAT, None, self.on_message)
        presences = self.client.summon(aioxmpp.dispatcher.SimplePresenceDispatcher)
        presences.register_callback(aioxmpp.PresenceType.AVAILABLE, None, self.on_presence)
        self.client.on_failure.connect(self.on_failure)

        self.trackers = {}        # id -> tracker
        self.order = []           # ids in send order
        self.position = {}        # id -> index in order
        self.seen_upto = 0        # order[:seen_upto] were marked displayed
        self.sent_at = {}         # id -> monotonic send time
        self.reached = {name: {} for name in MILESTONES}  # name -> id -> time
        self.failed = {}          # id -> state name
        self.markers_unmatched = 0
        self.t0 = None

    def on_failure(self, exc):
        if not self.ready.done():
            self.ready.set_exception(exc)
        elif not self.done.done():
            self.done.set_exception(exc)

    def on_presence(self, pres):
        if pres.from_ == self.client.local_jid and not self.ready.done():
            self.ready.set_result(None)

    def on_message(self, msg):
        marker = getattr(msg, "xep0333_marker", None)
        if not isinstance(marker, aioxmpp.misc.DisplayedMarker):
            return
        pos = self.position.get(marker.id_)
        if pos is None:
            self.markers_unmatched += 1
            return
        for msg_id in self.order[self.seen_upto:pos + 1]:
            try:
                self.trackers[msg_id]._set_state(MessageState.SEEN_BY_RECIPIENT, msg)
            except (ValueError, RuntimeError) as exc:
                logging.debug("marker for %s: %s", msg_id, exc)
        self.seen_upto = max(self.seen_upto, pos + 1)

    def on_state(self, msg_id, state, response=None):
        now = time.monotonic()
        for name, states in MILESTONES.items():
            if state in states and msg_id not in self.reached[name]:
                self.reached[name][msg_id] = now
        if state in FAILED:
            self.failed[msg_id] = state.name
        self.check_done()

    def check_done(self):
        n = self.args.count
        if self.done.done():
            return
        if len(self.failed) + len(self.reached["seen"]) >= n or \
                (self.args.no_markers and len(self.failed) + len(self.reached["to_recipient"]) >= n):
            self.done.set_result(None)

    def send_all(self):
        to = aioxmpp.JID.fromstr(self.args.to)
        body = self.args.body_prefix + "x" * max(0, self.args.body_size - len(self.args.body_prefix))
        self.t0 = time.monotonic()
        for i in range(self.args.count):
            msg = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=to)
            msg.body[None] = "%s %d" % (body, i)
            msg.xep0333_markable = True
            tracker = aioxmpp.tracking.MessageTracker()
            self.receipts.attach_tracker(msg, tracker)  # adds <request/>, sets the id
            self.trackers[msg.id_] = tracker
            self.position[msg.id_] = len(self.order)
            self.order.append(msg.id_)
            self.sent_at[msg.id_] = time.monotonic()
            tracker.on_state_changed.connect(
                lambda state, response=None, _id=msg.id_: self.on_state(_id, state, response))
            self.basic.send_tracked(msg, tracker)

    def result(self, complete, error=None):
        n = self.args.count
        out = {
            "implementation": "aioxmpp " + aioxmpp.__version__,
            "python": platform.python_version(),
            "count": n,
            "to": self.args.to,
            "complete": complete,
            "sm": bool(self.client.stream.sm_enabled) if self.client.running else None,
        }
        for name in MILESTONES:
            times = self.reached[name]
            out[name + "_count"] = len(times)
            out[name + "_s"] = (max(times.values()) - self.t0) if len(times) == n and self.t0 else None
            lat = [times[i] - self.sent_at[i] for i in times]
            out[name + "_latency_p50_s"] = percentile(lat, 50)
            out[name + "_latency_p99_s"] = percentile(lat, 99)
        out["failed_count"] = len(self.failed)
        out["failed_states"] = sorted(set(self.failed.values()))
        out["markers_unmatched"] = self.markers_unmatched
        if error:
            out["error"] = error
        return out

    async def run(self):
        self.presence.set_presence(aioxmpp.PresenceState(True))
        self.client.start()
        try:
            await asyncio.wait_for(asyncio.shield(self.ready), self.args.timeout)
        except Exception as exc:
            emit("error", error="login failed: %s: %s" % (type(exc).__name__, exc))
            return 1
        emit("ready", jid=str(self.client.local_jid), tls=bool(self.args.cafile))
        cpu0 = cpu_seconds()
        self.send_all()
        error = None
        try:
            await asyncio.wait_for(asyncio.shield(self.done), self.args.timeout)
        except asyncio.TimeoutError:
            error = "timeout after %ss" % self.args.timeout
        except asyncio.CancelledError:
            error = "stopped"
        except Exception as exc:
            error = "%s: %s" % (type(exc).__name__, exc)
        wall = time.monotonic() - self.t0
        cpu = cpu_seconds() - cpu0
        res = self.result(error is None and not self.failed, error)
        res["wall_s"] = wall
        res["cpu_s"] = cpu
        res["cpu_total_s"] = cpu_seconds()
        # ru_maxrss is in KiB on Linux.
        res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        for tracker in self.trackers.values():
            tracker.close()
        self.stopping = True
        if self.client.running:
            stopped = self.loop.create_future()
            self.client.on_stopped.connect(lambda: stopped.done() or stopped.set_result(None))
            self.client.stop()
            try:
                await asyncio.wait_for(stopped, 5)
            except asyncio.TimeoutError:
                pass
        emit("result", **res)
        return 0 if res["complete"] else 1

    def stop(self, reason):
        logging.info("stopping: %s", reason)
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(reason))
        if not self.done.done():
            self.done.cancel()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    xtcommon.add_login_arguments(parser)
    parser.add_argument("--to", required=True, help="responder JID (full JID: see above)")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--body-size", type=int, default=32)
    parser.add_argument("--body-prefix", default="bench")
    parser.add_argument("--no-markers", action="store_true",
                        help="finish once every message is DELIVERED_TO_RECIPIENT")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds for login, and again for the workload")
    args = parser.parse_args()
    xtcommon.check_login_arguments(parser, args)
    xtcommon.setup_logging(args.log_level)
    bench = Bench(args)
    xtcommon.install_stop_handlers(asyncio.get_event_loop(), bench.stop)
    return await bench.run()


if __name__ == "__main__":
    xtcommon.run(main)
