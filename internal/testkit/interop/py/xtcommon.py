"""Shared helpers of the xmpptrack interoperability peers.

Every peer writes one JSON object per line on its standard output (the
"event" key names the kind) and logs to standard error. Anything else that
a library prints is sent to standard error too, so that standard output stays
machine-readable. A peer stops when it receives SIGTERM or SIGINT or when its
standard input reaches end of file.
"""

import asyncio
import json
import logging
import os
import signal
import sys
import time

# Keep a private handle on the real standard output and point sys.stdout at
# standard error: stray print() calls in libraries must not corrupt the
# JSON-lines protocol.
_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
sys.stdout = sys.stderr


def emit(event, **fields):
    """Write one JSON event line on the real standard output."""
    fields = {"event": event, **fields}
    fields.setdefault("t", round(time.time(), 6))
    _out.write(json.dumps(fields, separators=(",", ":"), default=str) + "\n")
    _out.flush()


def setup_logging(level_name):
    level = getattr(logging, (level_name or "WARNING").upper(), logging.WARNING)
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def env_default(name, default=None):
    value = os.environ.get(name)
    return value if value else default


def add_login_arguments(parser):
    """Connection options shared by every peer (arguments win over env)."""
    parser.add_argument("--jid", default=env_default("XT_JID"),
                        help="account JID (env XT_JID)")
    parser.add_argument("--password", default=env_default("XT_PASSWORD"),
                        help="password (env XT_PASSWORD)")
    parser.add_argument("--host", default=env_default("XT_HOST", "127.0.0.1"),
                        help="server address (env XT_HOST)")
    parser.add_argument("--port", type=int,
                        default=int(env_default("XT_PORT", "5222")),
                        help="server port (env XT_PORT)")
    parser.add_argument("--cafile", default=env_default("XT_CAFILE"),
                        help="PEM certificate to trust; given: STARTTLS with "
                             "verification against it only; absent: "
                             "plaintext (env XT_CAFILE)")
    parser.add_argument("--log-level", default=env_default("XT_LOG_LEVEL",
                                                           "WARNING"))


def check_login_arguments(parser, args):
    if not args.jid or not args.password:
        parser.error("--jid and --password (or XT_JID/XT_PASSWORD) are required")


def parse_delay(text):
    """Return the marker delay in seconds, or None for "never"."""
    if text is None or text == "":
        return 0.0
    if text.strip().lower() in ("never", "none", "off"):
        return None
    value = float(text)
    if value < 0:
        return None
    return value


def install_stop_handlers(loop, stop):
    """Call stop() once on SIGTERM, SIGINT or end of file on standard input."""
    done = {"called": False}

    def once(reason):
        if done["called"]:
            return
        done["called"] = True
        stop(reason)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, once, signal.Signals(sig).name)

    fd = sys.stdin.fileno()

    def on_stdin():
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            once("stdin closed")

    try:
        os.set_blocking(fd, False)
        loop.add_reader(fd, on_stdin)
    except (OSError, ValueError, PermissionError):
        # Standard input that cannot be polled (e.g. a regular file or
        # /dev/null): only signals stop the peer.
        pass


def run(main):
    """Run the coroutine function main and exit with its code. An exception
    escaping main is reported as an error event (traceback on standard
    error) and exits with 1."""
    import traceback
    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = 0
    except SystemExit:
        raise
    except BaseException as exc:
        traceback.print_exc()
        emit("error", error="%s: %s" % (type(exc).__name__, exc))
        emit("stopped", code=1)
        code = 1
    sys.exit(code)
