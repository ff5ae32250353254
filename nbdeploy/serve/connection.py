"""The HTTP/1.1 connection the server answers on: uvicorn's httptools protocol with a leaner request cycle.

uvicorn's own cycle (``RequestResponseCycle``) costs more instructions per request than the
whole of nbdeploy's prediction path: it starts the application's task as soon as the headers
are parsed, so every request then waits on an ``asyncio.Event`` for its body, and each
response re-validates every header with two regular expressions. Here, for the usual
request (a known ``Content-Length`` up to 64 KiB, no ``Expect: 100-continue``), the task
starts once the whole body has arrived, and ``receive()`` hands it over without waiting;
the status line, headers and body go out in one write (the ASGI extension
``nbdeploy.respond`` takes a whole answer in one call). Everything else is uvicorn's:
the parser, keep-alive and its timeout, pipelining (a request waits for the one before it),
the concurrency limit, flow control, graceful shutdown and the supervisor of several
workers. Bodies that are larger, chunked or expect a 100 Continue start the task at once
and are streamed, as uvicorn does.

The application sees plain ASGI 3 (``http`` scopes, ``http.request`` / ``http.disconnect``
messages, ``http.response.start`` / ``http.response.body``), so it runs unchanged under
any ASGI server.
"""

from __future__ import annotations

import asyncio
import contextvars
import http
import urllib.parse
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .headers import check_value, lower_name

if TYPE_CHECKING:
    from collections import deque

#: a body up to this size, of a declared length, is read whole before the application starts
WHOLE_BODY_LIMIT = HIGH_WATER_LIMIT
_DISCONNECT = {"type": "http.disconnect"}


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
_DATE: list[Any] = [None, b""]


def _default_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (its date, renewed each second in a new list) as bytes, kept per list."""
    if _DATE[0] is not headers:
        _DATE[0], _DATE[1] = headers, b"".join(b"%s: %s\r\n" % pair for pair in headers)
    return _DATE[1]


class Protocol(HttpToolsProtocol):
    """One client connection (see the module's text); handed to uvicorn as its ``http`` protocol."""

    # uvicorn's per-request state, of other types here (the methods of uvicorn's that this class
    # keeps, shutdown() and the WebSocket upgrade, read only what both kinds have): the scope, built
    # a field at a time and given the ``nbdeploy.respond`` callable; a Cycle where uvicorn keeps its
    # RequestResponseCycle (None before the first request, as there); the cycles queued alone
    scope: dict[str, Any]  # type: ignore[assignment]  # not uvicorn's HTTPScope TypedDict
    cycle: Cycle  # type: ignore[assignment]  # not uvicorn's RequestResponseCycle
    pipeline: deque[Cycle]  # type: ignore[assignment]  # not uvicorn's (cycle, app) pairs
    #: when the connection last became idle (loop time; None while a request is in progress)
    idle_since: float | None = None
    #: the one keep-alive timer of this connection, re-armed only when it fires early
    idle_timer: asyncio.TimerHandle | None = None

    def _unset_keepalive_if_required(self) -> None:
        # called on every read: a mark, where uvicorn cancels a timer it set after every response
        self.idle_since = None

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.idle_since is None or self.transport.is_closing():
            return  # busy: the next response arms the timer again
        left = self.idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.idle_timer = self.loop.call_later(left, self._idle_check)
        else:
            self.timeout_keep_alive_handler()

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.length = -1  # the declared Content-Length (-1: none)
        self.scope = {
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace, which RFC 9110 5.5 excludes
        if name == b"content-length":
            self.length = int(value) if value.isdigit() else -1
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        http_version = parser.get_http_version()
        scope = self.scope
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path if self.root_path else raw_path
        scope["query_string"] = parsed.query or b""
        app = self.app
        if self.limit_concurrency is not None and (
            len(self.connections) >= self.limit_concurrency or len(self.tasks) >= self.limit_concurrency
        ):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        previous = self.cycle
        self.cycle = cycle = Cycle(self, scope, app, http_version != "1.0" and parser.should_keep_alive(),
                                   self.expect_100_continue)
        scope["extensions"] = {"nbdeploy.respond": cycle.respond}
        # stream the body to a running task when it is big, of unknown length or waits for a 100 Continue
        cycle.streams = self.expect_100_continue or not 0 <= self.length <= WHOLE_BODY_LIMIT
        if previous is None or previous.response_complete:
            if cycle.streams:
                cycle.start()
        else:  # pipelined: this one waits for the one before it to be answered
            self.flow.pause_reading()
            cycle.queued = True
            self.pipeline.appendleft(cycle)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.body.append(body)
        if cycle.streams:
            cycle.buffered += len(body)
            if cycle.buffered > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.more_body = False
        if cycle.task is None and not cycle.queued:
            cycle.start()
        else:
            cycle.wake()

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:  # the next pipelined request's turn (once its body is in, unless it streams)
            cycle = self.pipeline.pop()
            cycle.queued = False
            if cycle.streams or not cycle.more_body:
                cycle.start()
        else:
            self.idle_since = self.loop.time()
            if self.idle_timer is None:
                self.idle_timer = self.loop.call_later(self.timeout_keep_alive, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.wake()
        for queued in self.pipeline:  # never started: nothing will answer them
            queued.disconnected = True
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None:
            self.transport.close()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.parser = None  # type: ignore[assignment]  # as uvicorn does: a closed connection parses nothing


class Cycle:
    """One request and its response, as the ASGI application sees them."""

    __slots__ = ("protocol", "transport", "flow", "scope", "method", "app", "keep_alive", "waiting_for_100_continue",
                 "body", "buffered", "more_body", "streams", "queued", "task", "event", "disconnected",
                 "response_started", "response_complete", "remaining", "chunked", "delivered", "head")

    def __init__(self, protocol: Protocol, scope: dict[str, Any], app: Any, keep_alive: bool,
                 expect_100_continue: bool) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.flow = protocol.flow
        # held only until the task starts: the scope holds this cycle (its ``nbdeploy.respond``), and a
        # cycle that held its scope back would be garbage only the cyclic collector frees, a dozen
        # objects a request (the collector then took ~8 % of the CPU at 20k requests/s)
        self.scope: dict[str, Any] | None = scope
        self.method = scope["method"]
        self.app = app
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body: list[bytes] = []
        self.buffered = 0
        self.more_body = True
        self.streams = False
        self.queued = False
        self.task: asyncio.Task[None] | None = None
        self.event: asyncio.Event | None = None
        self.disconnected = False
        self.delivered = False  # the last body message was handed to the application
        self.response_started = False
        self.response_complete = False
        self.remaining = 0  # body bytes the declared Content-Length still expects
        self.chunked = False
        self.head = b""  # the status line and headers, until the body is sent

    def start(self) -> None:
        protocol = self.protocol
        # named here: a task without a name formats "Task-N" for itself, a cost on every request
        context = contextvars.Context() if protocol.config.reset_contextvars else None
        scope, self.scope = self.scope, None
        self.task = task = asyncio.Task(self.run(self.app, scope),  # type: ignore[arg-type]  # start() runs once: scope is set
                                        loop=protocol.loop, name="nbdeploy-request", context=context)
        task.add_done_callback(protocol.tasks.discard)
        protocol.tasks.add(task)

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()

    async def run(self, app: Any, scope: dict[str, Any]) -> None:
        try:
            result = await app(scope, self.receive, self.send)
        except BaseException as exc:
            self.protocol.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                self._flush_head()
                self.transport.close()
        else:
            if result is not None:
                self.protocol.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.protocol.logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                self.protocol.logger.error("ASGI callable returned without completing response.")
                self._flush_head()
                self.transport.close()

    async def _send_500(self) -> None:
        await self.send({"type": "http.response.start", "status": 500, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"), (b"connection", b"close")]})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    # -- ASGI ---------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        # wait for more of the body, or, once it was all handed over, for the end of the exchange
        while not (self.disconnected or self.response_complete) and (self.delivered or (self.more_body and not self.body)):
            self.flow.resume_reading()
            self.event = event = asyncio.Event()
            await event.wait()
            self.event = None
        if self.disconnected or self.response_complete:
            return _DISCONNECT
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        self.buffered = 0
        self.delivered = not self.more_body
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: dict[str, Any]) -> None:
        flow = self.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self._start(message["status"], message.get("headers", ()))
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")

    def respond(self, status: int, lines: bytes, body: bytes) -> bool:
        """The whole response in one call and one write, without the two awaited ASGI messages:
        the ASGI extension ``nbdeploy.respond`` of every request's scope. ``lines``: the header
        lines, checked by the caller (:mod:`.headers`), Content-Length among them. False when
        the client is not reading (the transport paused writing): the application then sends
        the usual messages, which wait."""
        if self.disconnected:
            return True
        if self.flow.write_paused or self.response_started:
            return False
        self.response_started = True
        self.waiting_for_100_continue = False
        end = b"\r\n" if self.keep_alive else b"connection: close\r\n\r\n"
        parts = [STATUS_LINES[status], _default_headers(self.protocol.server_state.default_headers), lines, end]
        if self.method != "HEAD":
            parts.append(body)
        self.transport.write(b"".join(parts))
        self._complete()
        return True

    def _start(self, status: int, headers: Any) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        content = [STATUS_LINES[status], _default_headers(self.protocol.server_state.default_headers)]
        length = None
        close = False
        for name, value in headers:
            low = lower_name(name)
            if low == b"content-length":
                if length is None and not self.chunked:
                    length = int(value)
            elif low == b"transfer-encoding" and value.lower() == b"chunked":
                self.chunked = True
            elif low == b"connection" and b"close" in [t.strip().lower() for t in value.split(b",")]:
                self.keep_alive = False
                close = True
            content += (low, b": ", check_value(value), b"\r\n")
        if not self.keep_alive and not close:
            content.append(b"connection: close\r\n")
        if length is not None and not self.chunked:
            self.remaining = length
        elif not self.chunked and self.method != "HEAD" and status not in (204, 304):
            self.chunked = True  # neither a length nor chunked given
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.head = b"".join(content)  # written with the first part of the body: one send for both

    def _flush_head(self) -> None:
        if self.head:
            self.transport.write(self.head)
            self.head = b""

    def _body(self, body: bytes, more_body: bool) -> None:
        head = self.head
        self.head = b""
        if self.method == "HEAD":
            self.remaining = 0
            if head:
                self.transport.write(head)
        elif self.chunked:
            out = [head, b"%x\r\n" % len(body), body, b"\r\n"] if body else [head]
            if not more_body:
                out.append(b"0\r\n\r\n")
            self.transport.write(b"".join(out))
        else:
            if len(body) > self.remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= len(body)
            if head or body:
                self.transport.write(head + body if head else body)
        if more_body:
            return
        if self.remaining:
            raise RuntimeError("Response content shorter than Content-Length")
        self._complete()

    def _complete(self) -> None:
        """The whole response is written: wake a receive() waiting for the end, close the
        connection unless it is kept alive, and let the next pipelined request go."""
        self.response_complete = True
        self.wake()
        if not self.keep_alive:
            self.transport.close()
        self.protocol.on_response_complete()
