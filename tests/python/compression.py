#!/usr/bin/env python3
"""Python's `websockets` client against danmaku, with and without permessage-deflate.

Usage: compression.py WS_URL STREAM TOKEN
Connects one viewer that offers compression (the library's default) and one that does not,
posts comments from a third (compressed) connection with TOKEN, and prints one JSON object:
the extensions each viewer negotiated and every frame each received after `init`, until the
comment whose text is "end" arrives.
"""
import asyncio
import json
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


async def collect(ws):
    frames = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        frames.append(frame)
        if frame["type"] == "comments" and any(c["text"] == "end" for c in frame["comments"]):
            return frames


def negotiated(ws):
    return [type(e).__name__ for e in ws.protocol.extensions] if hasattr(ws, "protocol") else [
        type(e).__name__ for e in ws.extensions
    ]


async def main(url, stream, token):
    viewer_url = f"{url}/v1/streams/{stream}/ws"
    deflated = await websockets.connect(viewer_url)
    plain = await websockets.connect(viewer_url, compression=None)
    for ws in (deflated, plain):
        init = json.loads(await ws.recv())
        assert init["type"] == "init", init
    tasks = [asyncio.create_task(collect(ws)) for ws in (deflated, plain)]
    poster = await websockets.connect(
        f"{viewer_url}?access_token={token}",
        extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=True)],
    )
    await poster.recv()
    acks = 0
    for i in range(20):
        text = "end" if i == 19 else f"python {i} " + "p" * 150
        await poster.send(json.dumps({"type": "comment", "text": text, "ref": f"r{i}"}))
    while acks < 20:
        frame = json.loads(await asyncio.wait_for(poster.recv(), 10))
        if frame["type"] == "ack":
            acks += 1
        elif frame["type"] == "error":
            raise SystemExit(f"refused: {frame}")
    frames = await asyncio.gather(*tasks)
    print(json.dumps({
        "extensions": [negotiated(deflated), negotiated(plain), negotiated(poster)],
        "deflated": frames[0],
        "plain": frames[1],
    }))
    for ws in (deflated, plain, poster):
        await ws.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
