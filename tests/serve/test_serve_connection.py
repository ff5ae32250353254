"""HTTP/1.1 on the wire, through nbdeploy's connection protocol (serve/connection.py): pipelining,
chunked and 100-continue bodies, bodies over the whole-body limit, HEAD, keep-alive and its idle
timeout, a client that leaves mid-body. Raw sockets against a real server process."""

from __future__ import annotations

import json
import socket
import time

import pytest
from conftest import metric, start


def _request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _split_body(rows) -> bytes:
    return json.dumps({"dataframe_split": {"columns": list(rows.columns),
                                           "data": rows.astype(object).values.tolist()}}).encode()


def _connect(handle) -> socket.socket:
    return socket.create_connection((handle.host, handle.port), timeout=30)


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _responses(data: bytes, heads: int = 0) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse consecutive HTTP/1.1 responses, each with a Content-Length; the first ``heads``
    answer HEAD requests (their Content-Length is the GET's, and no body follows)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        n = int(headers.get("content-length", 0)) if status != 100 and len(out) >= heads else 0
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    status, headers, body = _responses(data)[0]
    want = int(headers.get("content-length", 0)) if status != 100 else 0
    while len(body) < want:
        body += sock.recv(65536)
    return status, headers, body


def test_pipelined_requests_are_answered_in_order(classifier_server, training_frame):
    rows = training_frame.dropna()
    a, b = _split_body(rows.iloc[[0]]), _split_body(rows.iloc[[1, 2, 3]])
    with _connect(classifier_server) as sock:  # four requests in one write: each waits for the one before
        sock.sendall(_request("POST", "/invocations", a, {"Content-Type": "application/json"})
                     + _request("GET", "/health")
                     + _request("POST", "/invocations", b, {"Content-Type": "application/json"})
                     + _request("GET", "/ping", headers={"Connection": "close"}))
        answers = _responses(_read_until_closed(sock))
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    assert len(json.loads(answers[0][2])["predictions"]) == 1
    assert json.loads(answers[1][2])["status"] == "ok"
    assert len(json.loads(answers[2][2])["predictions"]) == 3
    assert answers[3][1]["connection"] == "close"
    ids = [headers["x-request-id"] for _, headers, _ in answers]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_chunked_body_after_100_continue_predicts_as_a_whole_one(classifier_server, training_frame):
    body = _split_body(training_frame.dropna().iloc[:5])
    with _connect(classifier_server) as sock:
        sock.sendall(_request("POST", "/invocations", body, {"Content-Type": "application/json"}))
        whole = json.loads(_read_response(sock)[2])
        sock.sendall(_request("POST", "/invocations", headers={
            "Content-Type": "application/json", "Transfer-Encoding": "chunked", "Expect": "100-continue"}))
        status, _, _ = _read_response(sock)  # the server asks for the body before it is sent
        assert status == 100
        half = len(body) // 2
        for part in (body[:half], body[half:]):
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            time.sleep(0.05)
        sock.sendall(b"0\r\n\r\n")
        status, _, answer = _read_response(sock)
    assert status == 200
    assert json.loads(answer) == whole


def test_a_body_over_the_limit_is_refused_and_the_connection_serves_on(classifier_server, training_frame):
    rows = training_frame.dropna()
    big = _split_body(rows.sample(3000, replace=True, random_state=1))  # over 64 KiB: streamed, then refused
    assert len(big) > 64 * 1024
    with _connect(classifier_server) as sock:
        sock.sendall(_request("POST", "/invocations", big, {"Content-Type": "application/json"}))
        status, _, answer = _read_response(sock)
        assert status == 413
        assert "limit" in json.loads(answer)["message"]
        sock.sendall(_request("POST", "/invocations", _split_body(rows.iloc[[0]]), {"Content-Type": "application/json"}))
        status, _, answer = _read_response(sock)
    assert status == 200 and len(json.loads(answer)["predictions"]) == 1


def test_head_has_the_headers_of_get_and_no_body(classifier_server):
    with _connect(classifier_server) as sock:
        sock.sendall(_request("GET", "/v2/health/live"))
        status, got, body = _read_response(sock)
        sock.sendall(_request("HEAD", "/v2/health/live") + _request("GET", "/ping", headers={"Connection": "close"}))
        (head_status, head, nothing), after = _responses(_read_until_closed(sock), heads=1)
    assert status == head_status == 200
    assert head["content-length"] == got["content-length"] == str(len(body))
    assert nothing == b"" and after[0] == 200  # the HEAD answer ended where its headers did


def test_an_idle_keep_alive_connection_is_closed_but_a_busy_one_is_not(classifier_server):
    keep_alive = 5.0  # uvicorn's default, which nbdeploy keeps
    with _connect(classifier_server) as sock:
        start = time.monotonic()
        for _ in range(3):  # one request every 3 s: past the 5 s the first answer's timer was set for
            sock.sendall(_request("GET", "/ping"))
            assert _read_response(sock)[0] == 200
            time.sleep(3)
        last = time.monotonic() - 3
        assert last - start > keep_alive
        sock.settimeout(keep_alive + 10)
        assert sock.recv(1) == b""  # then closed by the server, once idle for the keep-alive time
        assert time.monotonic() - last >= keep_alive - 0.1


def test_a_client_that_leaves_mid_body_gets_nothing_and_the_server_serves_on(classifier_server, training_frame):
    body = _split_body(training_frame.dropna().iloc[:3])
    with _connect(classifier_server) as sock:
        sock.sendall(_request("POST", "/invocations", body[:20],
                              {"Content-Type": "application/json", "Content-Length": str(len(body))}))
        time.sleep(0.2)
    with _connect(classifier_server) as sock:
        sock.sendall(_request("POST", "/invocations", body, {"Content-Type": "application/json"}))
        status, _, answer = _read_response(sock)
    assert status == 200 and len(json.loads(answer)["predictions"]) == 3


@pytest.mark.parametrize("header", [b"x-bad\r\nname", b"x-bad name", b"x-bad:name", b""])
@pytest.mark.parametrize("value", [b"1\r\nset-cookie: a=b", b"1\nset-cookie: a=b", b"1\r", b"a\x00b", b"a\x7f"])
def test_a_response_header_that_would_split_the_response_is_refused(header, value):
    """The cycle's header check (the application's own headers go through it on every answer)."""
    from nbdeploy.serve.connection import Cycle

    class Transport:
        def __init__(self) -> None:
            self.written: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.written.append(data)

    class Flow:
        write_paused = False

    class Proto:
        transport, flow = Transport(), Flow()

        class server_state:  # noqa: N801
            default_headers = [(b"date", b"Mon, 07 Dec 2026 01:00:00 GMT")]

        def on_response_complete(self) -> None:
            pass

    def cycle() -> Cycle:
        return Cycle(Proto(), {"method": "GET"}, None, True, False)

    with pytest.raises(RuntimeError, match="header name"):
        cycle()._start(200, [(header, b"1")])
    with pytest.raises(RuntimeError, match="header value"):
        cycle()._start(200, [(b"x-ok", value), (b"content-length", b"0")])
    from nbdeploy.serve import headers

    with pytest.raises(RuntimeError, match="header name"):
        headers.line(header, b"1")
    with pytest.raises(RuntimeError, match="header value"):
        headers.lines([(b"x-ok", b"fine"), (b"x-ok", value)])
    ok = cycle()
    assert ok.respond(200, headers.line(b"X-Ok", b"a\tb") + headers.lines([(b"content-length", b"2")]), b"{}")
    assert ok.transport.written == [b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 01:00:00 GMT\r\n"
                                    b"x-ok: a\tb\r\ncontent-length: 2\r\n\r\n{}"]
    assert ok.response_complete


def test_answered_requests_leave_no_garbage_for_the_cyclic_collector(compiled_classifier_bundle, training_frame,
                                                                      tmp_path):
    # what a request makes must be freed when it ends; a reference cycle (the scope holding its cycle's
    # nbdeploy.respond, the cycle holding the scope) left a dozen objects a request for the collector,
    # which then took ~8 % of the CPU under load; a refused request's error, through its traceback's
    # frames, held the whole request (~60 objects). Enough requests that such garbage would pass the
    # server's young-generation threshold (10,000) and be collected within the window. A compiled
    # program: scikit-learn's own predict builds cycles of its own (joblib, metadata routing).
    handle = start(compiled_classifier_bundle, tmp_path)
    try:
        rows = training_frame.dropna()
        types = {"age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}
        v2 = [json.dumps({"inputs": [{"name": c, "shape": [n], "datatype": types[c], "data": rows[c][:n].tolist()}
                                     for c in rows.columns]}).encode() for n in (1, 4)]
        bodies = [("/invocations", _split_body(rows.iloc[[i]]), 200) for i in range(4)] + [
            ("/invocations", _split_body(rows.iloc[:7]), 200)] + [("/v2/models/churn/infer", b, 200) for b in v2] + [
            ("/invocations", _split_body(rows.iloc[[0]].drop(columns="age")), 422),  # refused in its batch
            ("/invocations", _split_body(rows.iloc[[0]].assign(age="old")), 422),
            ("/invocations", b'{"dataframe_split": ', 400)]

        def collected() -> float:
            with _connect(handle) as sock:
                sock.sendall(_request("GET", "/metrics"))
                text = _read_response(sock)[2].decode()
            return sum(metric(text, f'python_gc_objects_collected_total{{generation="{g}"}}') for g in range(3))

        before = collected()
        requests = 1500
        with _connect(handle) as sock:
            for i in range(requests):
                path, body, expected = bodies[i % len(bodies)]
                sock.sendall(_request("POST", path, body, {"Content-Type": "application/json"}))
                status, _, answer = _read_response(sock)
                assert status == expected, answer
        freed = collected() - before
        assert freed < requests / 20, f"the collector freed {freed:.0f} objects over {requests} requests"
    finally:
        handle.stop()
