"""The HTTP floor for benchmarks/serve_vs_mlflow.py: a bare ASGI app that parses the JSON
body with orjson and returns a constant, served exactly like nbdeploy serve (uvicorn,
httptools, uvloop, our TCP_NODELAY socket). Usage: python serve_vs_mlflow_floor.py PORT
"""

from __future__ import annotations

import sys

import orjson

BODY = b'{"predictions":[0]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    if scope["method"] == "POST":
        orjson.loads(b"".join(chunks))
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    import uvicorn

    from nbdeploy.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", int(sys.argv[1]))
    config = uvicorn.Config(app, http="httptools", loop="uvloop", lifespan="on", access_log=False,
                            log_level="warning", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
