"""Traffic against a real danmaku for scripts/observability/evaluate.py: every metric the
dashboards and rules query gets series, and the counters and histograms rise over several
scrapes (a rate needs two samples that differ).

`traffic()` (about 10 s): viewers over WebSocket (plain and permessage-deflate, one with
`max_rate=1`), short-lived viewers every tick (the init histogram), comments over WebSocket
from two users and over HTTP from a service (user, gift, system), comments refused for each
reason a client can cause (invalid, too_long, rate_limited, unauthorized), a handshake with a
bad token (refused, 401), and a slow consumer: a socket with a tiny receive buffer that never
reads, on a stream of long comments, until the server drops it (4001).

`fill_to_cap()`: connections until the instance refuses one for its connection cap (503),
so readiness reports `full`; they stay open until `close()`.

Stdlib and Debian's python3-websockets only.
"""
import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import socket
import time
import urllib.parse

import websockets

MAIN = "obs-main"
SLOW = "obs-slow"
# What traffic() must have made rise (prefixes of /metrics sample lines).
COUNTED = [
    "danmaku_ws_init_duration_seconds_count", "danmaku_comment_delivery_duration_seconds_count",
    "danmaku_comment_fanout_duration_seconds_count", "danmaku_ws_compression_ratio_count",
    'danmaku_comments_published_total{kind="user"}', 'danmaku_comments_published_total{kind="gift"}',
    'danmaku_comments_published_total{kind="system"}', "danmaku_comments_delivered_total",
    'danmaku_comments_dropped_total{reason="slow_consumer"}',
    'danmaku_comments_thinned_total{reason="budget"}',
    'danmaku_comments_rejected_total{code="invalid"}',
    'danmaku_comments_rejected_total{code="too_long"}',
    'danmaku_comments_rejected_total{code="rate_limited"}',
    'danmaku_comments_rejected_total{code="unauthorized"}',
    "danmaku_ws_handshakes_refused_total", "danmaku_ws_frames_compressed_total",
    'danmaku_ws_written_bytes_total{compression="deflate"}',
    'danmaku_ws_written_bytes_total{compression="plain"}', "danmaku_streams_subscribed",
    "danmaku_ws_connections",
]


def jwt(secret, sub, name):
    """An HS256 viewer token (docs/protocol.md section 2)."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": sub, "name": name, "exp": int(time.time()) + 3600}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(signature)}"


class Danmaku:
    def __init__(self, base_url, jwt_secret, service_token):
        self.base = base_url.rstrip("/")
        parsed = urllib.parse.urlsplit(self.base)
        self.host, self.port = parsed.hostname, parsed.port
        self.ws_base = "ws://%s:%d" % (self.host, self.port)
        self.secret = jwt_secret
        self.service_token = service_token
        self.sockets = []  # every WebSocket opened, closed by close()
        self.readers = []
        self.raw = []
        self.frames = 0

    # --- HTTP ------------------------------------------------------------------------------
    def request(self, method, path, body=None, token=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def post(self, stream, comment):
        status, text = self.request(
            "POST", f"/v1/streams/{stream}/comments", comment, self.service_token)
        if status != 201:
            raise RuntimeError(f"POST /v1/streams/{stream}/comments: {status} {text}")

    def metric(self, line_prefix):
        """The value of the first /metrics sample line that starts with line_prefix."""
        status, text = self.request("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(line_prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    # --- WebSocket -------------------------------------------------------------------------
    async def connect(self, stream, token=None, deflate=False, query=""):
        params = [p for p in (query, f"access_token={token}" if token else "") if p]
        url = f"{self.ws_base}/v1/streams/{stream}/ws" + ("?" + "&".join(params) if params else "")
        ws = await websockets.connect(
            url, compression="deflate" if deflate else None, open_timeout=10, max_size=2**24)
        init = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert init["type"] == "init", init
        return ws

    async def viewer(self, stream, **kwargs):
        """A viewer that keeps reading until closed."""
        ws = await self.connect(stream, **kwargs)
        self.sockets.append(ws)
        self.readers.append(asyncio.create_task(self._read(ws)))
        return ws

    async def _read(self, ws):
        try:
            async for _ in ws:
                self.frames += 1
        except websockets.ConnectionClosed:
            pass

    async def refused(self, stream, query=""):
        """The status of a handshake the server must refuse."""
        try:
            ws = await self.connect(stream, query=query)
        except websockets.InvalidStatusCode as e:
            return e.status_code
        self.sockets.append(ws)
        self.readers.append(asyncio.create_task(self._read(ws)))
        return None

    async def answers(self, ws, n):
        """The next n ack/error frames a poster gets."""
        out = []
        while len(out) < n:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] in ("ack", "error"):
                out.append(frame)
        return out

    def slow_consumer(self, stream):
        """A WebSocket (no compression) with a tiny receive buffer that never reads."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((self.host, self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((
            f"GET /v1/streams/{stream}/ws HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                raise RuntimeError("slow consumer: connection closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"slow consumer: {head.splitlines()[0]!r}")
        self.raw.append(s)
        return s

    async def close(self):
        closing = asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        try:
            await asyncio.wait_for(closing, 3)
        except asyncio.TimeoutError:
            pass  # a server that is gone: the process ends anyway
        for task in self.readers:
            task.cancel()
        for s in self.raw:
            s.close()


async def traffic(d, log):
    """About 10 s of traffic on MAIN, and a slow consumer dropped on SLOW."""
    alice = await d.connect(MAIN, token=jwt(d.secret, "obs-alice", "alice"), deflate=True)
    bob = await d.connect(MAIN, token=jwt(d.secret, "obs-bob", "bob"))
    d.sockets += [alice, bob]
    for i in range(6):
        await d.viewer(MAIN, deflate=i % 2 == 0)
    await d.viewer(MAIN, query="max_rate=1")  # thinned: its budget is one user comment a second
    log(f"{len(d.sockets)} WebSockets on {MAIN}")

    # The slow consumer: long comments on its own stream until the server cuts it off.
    d.slow_consumer(SLOW)
    big = "漢" * 1990  # ~6 KB a comment (DANMAKU_MAX_COMMENT_CHARS=2000)
    dropped_before = d.metric('danmaku_comments_dropped_total{reason="slow_consumer"}')

    async def flood():
        for i in range(400):
            await asyncio.to_thread(d.post, SLOW, {"kind": "system", "text": f"{i} {big}"})
            if i % 20 == 19 and d.metric(
                    'danmaku_comments_dropped_total{reason="slow_consumer"}') > dropped_before:
                return i + 1
        raise RuntimeError("the slow consumer was never dropped (400 comments of 6 KB)")

    flooding = asyncio.create_task(flood())

    refusals = {}
    for tick in range(40):  # 40 x 0.25 s
        # A short-lived viewer: one more init observation per tick.
        ws = await d.connect(MAIN, deflate=tick % 2 == 0)
        await ws.close()
        # A service's comment, long enough to be compressed (DANMAKU_WS_COMPRESSION_MIN_BYTES).
        kind = ("system", "gift", "user")[tick % 3]
        comment = {"kind": kind, "text": f"tick {tick} " + "service comment " * 20}
        if kind == "user":
            comment["user"] = {"id": "obs-service-user", "name": "via the service"}
        elif kind == "gift":
            comment["data"] = {"item": "rose", "amount": tick}
        await asyncio.to_thread(d.post, MAIN, comment)
        if tick % 4 == 0:  # a user comment a second, within the rate limit
            comment = {"type": "comment", "text": f"alice {tick}", "ref": f"a{tick}"}
            await alice.send(json.dumps(comment))
            (answer,) = await d.answers(alice, 1)
            if answer["type"] != "ack":
                raise RuntimeError(f"alice's comment refused: {answer}")
        if tick == 10:  # a burst past the rate limit (5), an empty and an over-long comment
            texts = [f"bob {i}" for i in range(8)] + ["", "x" * 2001]
            for i, text in enumerate(texts):
                await bob.send(json.dumps({"type": "comment", "text": text, "ref": f"b{i}"}))
            for answer in await d.answers(bob, len(texts)):
                if answer["type"] == "error":
                    refusals[answer["code"]] = refusals.get(answer["code"], 0) + 1
        if tick == 20:  # an anonymous viewer may not post
            anon = await d.connect(MAIN)
            await anon.send(json.dumps({"type": "comment", "text": "anonymous", "ref": "n"}))
            (answer,) = await d.answers(anon, 1)
            refusals[answer.get("code", answer["type"])] = 1
            await anon.close()
        if tick == 30:
            status = await d.refused(MAIN, query="access_token=not-a-token")
            if status != 401:
                raise RuntimeError(f"a bad token's handshake: {status}, expected 401")
        await asyncio.sleep(0.25)
    for code in ("rate_limited", "invalid", "too_long", "unauthorized"):
        if not refusals.get(code):
            raise RuntimeError(f"no comment refused with {code}: {refusals}")
    posts = await flooding
    log(f"refused comments {refusals}; slow consumer dropped after {posts} comments of 6 KB")
    text = d.request("GET", "/metrics")[1]
    missing = [m for m in COUNTED if not any(
        line.startswith(m) and float(line.rsplit(" ", 1)[1]) > 0 for line in text.splitlines())]
    if missing:
        raise RuntimeError(f"the traffic left these at 0 or absent in /metrics: {missing}")
    log(f"/metrics: each of {len(COUNTED)} counters and histograms the traffic aims at rose")


async def fill_to_cap(d, log, most=200):
    """Connections until one is refused with 503: the instance is at its connection cap."""
    for n in range(most):
        status = await d.refused(MAIN)
        if status == 503:
            log(f"at the connection cap: {n} more connections, then 503")
            return
        if status is not None:
            raise RuntimeError(f"a handshake refused with {status}, expected 503 at the cap")
    raise RuntimeError(f"no 503 after {most} more connections: is DANMAKU_MAX_CONNECTIONS set?")
