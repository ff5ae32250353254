"""The request log's search for secrets is skipped only where it cannot find one: a payload
that validation proved to be numbers, booleans and training categories, or whose strings were
searched before. Everything else is still searched, and a client's secret never reaches disk."""

from __future__ import annotations

import json

from nbdeploy.serve.redact import KnownClean

GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zA4"  # made up, in a real token's shape
SERVER_SECRET = "srvPw8Zq2Lm7Xk4"


def _split(names, *rows):
    return {"columns": list(names), "data": [list(r) for r in rows]}


def test_a_payload_of_numbers_and_searched_strings_is_clean_and_anything_else_is_not():
    clean = KnownClean([SERVER_SECRET.encode()])
    names = ["age", "income", "city", "member"]
    assert clean.payload(_split(names, [30, 51000.5, "paris", True], [41, None, "lyon", False]), [0, 1])
    assert clean.payload(_split(names, [30, 1.5, "paris", True]), ["yes"])  # class labels are strings too
    assert clean.payload(_split(names, [30, 1.5, "paris", True]), None)
    for row in ([30, 1.5, GITHUB, True],  # a key's shape
                [30, 1.5, f"x{SERVER_SECRET}x", True],  # the server's own secret inside a value
                [30, 1.5, ["paris"], True],  # a nested list: not a value this check knows
                [30, 1.5, "p" * 65, True]):  # too long to remember: left to the writer's search
        assert not clean.payload(_split(names, row), [0]), row
    assert not clean.payload(_split(["age", "api_token"], [30, "abc"]), [0])  # a column named like a secret

    class Text(str):
        pass

    assert not clean.payload(_split(names, [30, 1.5, Text("paris"), True]), [0])
    assert not clean.payload({"columns": names, "data": [[30, 1.5, "paris", True]], "extra": 1}, [0])
    assert not clean.payload([{"age": 30}], [0])  # not the split form
    assert not clean.payload(_split(names, [30, 1.5, "paris", True]), [[0.2, 0.8]])  # outputs not scalars
    assert clean.outputs([0, 1] * 50) and clean.outputs([0.5, None]) and clean.outputs(["yes", "no"])
    assert not clean.outputs([0, [1]]) and not clean.outputs(["yes", GITHUB]) and not clean.outputs((0, 1))


def test_numbers_are_searched_when_a_secret_could_be_read_inside_one():
    """A secret of digits (a PIN) could sit inside a logged number (0.12345678): numbers are
    then no longer clean without a look."""
    pin = KnownClean([b"12345678"])
    assert not pin.payload(_split(["a"], [0.123456789]), None)
    assert not pin.outputs([0.123456789, 0.5]) and not pin.outputs([12345678])
    assert not pin.schema([("a", "double", None)])
    assert pin.payload(_split(["a"], ["paris"]), None)  # strings are still searched as before
    assert KnownClean([b"abcdefgh12"]).payload(_split(["a"], [0.123456789]), None)


def test_strings_are_remembered_up_to_the_limit_and_still_searched_past_it():
    clean = KnownClean([], limit=2)
    assert clean.payload(_split(["a"], ["one"], ["two"]), None)
    assert clean.remembered == 2  # "a" and "one": memory stays bounded whatever clients send
    assert clean.payload(_split(["a"], ["three"]), None)  # searched, clean, not remembered
    assert not clean.payload(_split(["a"], [GITHUB]), None)  # past the limit still searched
    assert clean.remembered == 2


def test_a_schema_is_known_clean_only_when_every_value_it_lets_through_is():
    clean = KnownClean([SERVER_SECRET.encode()])
    assert clean.schema([("age", "long", None), ("income", "double", None),
                         ("city", "string", frozenset({"paris", "lyon"})), ("member", "boolean", None)])
    assert not clean.schema([("note", "string", None)])  # free text: anything can come
    assert not clean.schema([("city", "string", frozenset({"paris", GITHUB}))])  # a category with a key's shape
    assert not clean.schema([("city", "string", frozenset({"paris", SERVER_SECRET}))])
    assert not clean.schema([("api_token", "double", None)])
    assert not clean.schema([("when", "datetime", None)])


def test_validated_requests_are_logged_unsearched_and_a_secret_in_a_category_column_is_still_masked(
        classifier_bundle, tmp_path, monkeypatch):
    """A served model's usual requests - numbers, booleans and training categories, in any
    request format - are written as they came without the search (the /metrics counter of
    searched records stays 0). A key's shape or the server's own secret sent as a category is
    an unseen category: that record is searched and the value masked before it reaches disk."""
    from conftest import Client, metric, read_log, start, wait_until

    monkeypatch.setenv("DB_PASSWORD", SERVER_SECRET)
    names = ["age", "income", "city", "member"]
    row = [33, 48000.0, "nice", True]
    v2 = {"inputs": [{"name": n, "shape": [1], "datatype": t, "data": [v]}
                     for n, t, v in zip(names, ["INT64", "FP64", "BYTES", "BOOL"], row, strict=True)]}
    handle = start(classifier_bundle, tmp_path)
    c = Client(handle.url)
    try:
        ordinary = [
            c.post("/invocations", {"dataframe_split": _split(names, row)}),
            c.post("/invocations", {"dataframe_split": _split(names, row, [61, None, "lyon", False])}),
            c.post("/invocations", {"dataframe_records": [dict(zip(names, row, strict=True))]}),
            c.post("/v2/models/churn/infer", v2),
        ]
        assert [s for s, _, _ in ordinary] == [200] * 4
        text = wait_until(lambda: (t := c.get("/metrics")[2]) and metric(
            t, "nbdeploy_requestlog_records_total") == 4 and t, what="4 records written")
        assert metric(text, "nbdeploy_requestlog_searched_total") == 0

        sent = [c.post("/invocations", {"dataframe_split": _split(names, [33, 48000.0, secret, True])})
                for secret in (GITHUB, SERVER_SECRET)]
        assert [s for s, _, _ in sent] == [200, 200]  # an unseen category is flagged, not refused
        text = wait_until(lambda: (t := c.get("/metrics")[2]) and metric(
            t, "nbdeploy_requestlog_records_total") == 6 and t, what="6 records written")
        assert metric(text, "nbdeploy_requestlog_searched_total") == 2
    finally:
        c.close()
        assert handle.stop() == 0
    raw = (tmp_path / "requests.jsonl").read_text()
    assert GITHUB not in raw and SERVER_SECRET not in raw
    records = [r for r in read_log(tmp_path / "requests.jsonl") if r["endpoint"] in ("invocations", "v2_infer")]
    assert [r["inputs"] for r in records[:4]] == [
        _split(names, row), _split(names, row, [61, None, "lyon", False]), _split(names, row), _split(names, row)]
    assert [r["inputs"]["data"][0][2] for r in records[4:]] == ["***", "***"]
    assert all(json.dumps(r["flags"]) for r in records[4:])
