"""The secret scrubber: known key shapes and random literals under secret names are masked,
ordinary code, digests and commits are left alone, and what was masked is reported by kind."""

from __future__ import annotations

import json

import pytest

from nbdeploy.base.redact import MASK, recording, scrub, scrub_text, scrubbing

# Made-up keys in the shapes real ones have (none of them works anywhere).
SK = "sk-live-4eC39HqLyjWDarjtT1zdp7dc"
AWS_ID = "AKIAZ7Q2MXH4RT5KPL3N"
AWS_SECRET = "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"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY2zA4"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x2c9Q\nb3RvbGl0ZQ==\n-----END RSA PRIVATE KEY-----"


def _kinds(text: str) -> tuple[str, list[str]]:
    with recording() as found:
        out = scrub_text(text, values=[])
    return out, sorted({f["kind"] for f in found})


@pytest.mark.parametrize(("text", "secret", "kind"), [
    (f'api_key = "{SK}"', SK, "API key (sk-...)"),
    (f"client = Client(sk_live_{SK[8:]})", SK[8:], "API key (sk-...)"),
    (f"AWS_ACCESS_KEY_ID={AWS_ID}", AWS_ID, "AWS access key id"),
    (f'aws_secret_access_key = "{AWS_SECRET}"', AWS_SECRET, "secret assigned to a name"),
    (f"token: {GITHUB}", GITHUB, "GitHub token"),
    (f"Authorization: Bearer {JWT}", JWT, "JSON web token"),
    ("headers = {'Authorization': 'Bearer Zx81kQ03mLp7Vr5sTn2Y'}", "Zx81kQ03mLp7Vr5sTn2Y", "bearer token"),
    (f"key = '''{PEM}'''", "MIIEowIBAAKCAQEA7x2c9Q", "private key block"),
    ("engine = create_engine('postgresql://scott:Tiger2024x@db/sales')", "Tiger2024x", "password in a URL"),
    ('{"client_secret": "9fQ2xLr8Tz4Wb6Nc1Vd3"}', "9fQ2xLr8Tz4Wb6Nc1Vd3", "secret assigned to a name"),
    ("DB_PASSWORD=c7Hq2Zr9Lx4Tv8Kp", "c7Hq2Zr9Lx4Tv8Kp", "secret assigned to a name"),
    ('auth_token: str = "f3a9c2e1b7d4a6c8e0f2"', "f3a9c2e1b7d4a6c8e0f2", "secret assigned to a name"),
])
def test_each_key_shape_is_masked_and_reported_by_kind(text: str, secret: str, kind: str) -> None:
    out, kinds = _kinds(text)
    assert secret not in out and MASK in out
    assert kind in kinds


def test_a_key_in_a_notebook_cell_is_masked_in_the_notebooks_json() -> None:
    """In an .ipynb the cell source is JSON: quotes are escaped and lines are list items."""
    nb = {"cells": [{"cell_type": "code", "source": [f'api_key = "{SK}"\n', f'aws_key = "{AWS_SECRET}"\n',
                                                      f'pem = """{PEM}"""\n', "model.fit(X, y)\n"]}]}
    text = json.dumps(nb, indent=1)
    out, kinds = _kinds(text)
    for secret in (SK, AWS_SECRET, "MIIEowIBAAKCAQEA7x2c9Q"):
        assert secret not in out
    assert json.loads(out)["cells"][0]["source"][-1] == "model.fit(X, y)\n"  # still a notebook
    assert kinds == ["API key (sk-...)", "private key block", "secret assigned to a name"]


@pytest.mark.parametrize("text", [
    '"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"',
    '"files": {"model/model.skops": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}',
    '"git": {"commit": "3e1f0c2d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e", "notebook_modified": false}',
    "commit 3e1f0c2d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
    "df = df.sort_values(key=sort_key_for_region_2024)",
    "sk_learn_pipeline_v2_final = make_pipeline(StandardScaler())",
    'token = tokenizer.tokenize("hello world")',
    'password = os.environ["DB_PASSWORD"]',
    'api_key = "YOUR_API_KEY_HERE"',
    'secret_path = "/data/secrets/2024/train_set_v3.parquet"',
    "key: ./data/customers_2024_q3.csv",
    "scikit-learn==1.5.2\nnumpy==2.1.3\n",
    "run_id = 'a3f9c2e1b7d44a6c8e0f2d9b1c7a5e3f'",
    "Bearer token authentication is described below",
])
def test_ordinary_code_digests_and_commits_are_left_alone(text: str) -> None:
    out, kinds = _kinds(text)
    assert out == text and kinds == []


def test_a_document_walk_masks_a_random_string_under_a_secret_key() -> None:
    with recording() as found, scrubbing("manifest.json"):
        out = scrub({"parameters": {"api_token": "Z9x2Lq7Wm4Rt8Vn3Kp6Y", "alpha": 0.5,
                                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
                    values=[])
    assert out["parameters"] == {"api_token": MASK, "alpha": 0.5,
                                 "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
    assert found == [{"kind": "secret assigned to a name", "count": 1, "where": "manifest.json"}]


def test_scrubbing_twice_changes_nothing_more_and_reports_nothing() -> None:
    once, _ = _kinds(f'api_key = "{SK}"\nurl = "https://u:Pa55word123@host/x"')
    twice, kinds = _kinds(once)
    assert twice == once and kinds == []


SIG = "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"


@pytest.mark.parametrize("url, kept", [
    (f"https://b.s3.amazonaws.com/d.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x%2F20261207%2Fs3"
     f"&X-Amz-Date=20261207T101500Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FwoGZXIvYXdzEBYa"
     f"&X-Amz-Signature={SIG}",
     "https://b.s3.amazonaws.com/d.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***&X-Amz-Date=20261207T101500Z"
     "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=***&X-Amz-Signature=***"),
    ("https://storage.googleapis.com/b/d.csv?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=0a1b2c3d4e5f6071",
     "https://storage.googleapis.com/b/d.csv?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=***"),
    ("https://acct.blob.core.windows.net/c/d.csv?sv=2022-11-02&sp=r&sig=AbCdEf0123456789%2BxyzQRS%3D",
     "https://acct.blob.core.windows.net/c/d.csv?sv=2022-11-02&sp=r&sig=***"),
    ("https://api.example.org/export.csv?access_token=ya29.a0AfH6SMBxyz&apikey=0123456789abcdef&page=2",
     "https://api.example.org/export.csv?access_token=***&apikey=***&page=2"),
    # names that merely contain a secret word, and short values, are left alone
    ("https://example.org/data.csv?monkey=12345678&zipcode=12345678&key=1&date=2026-01-01",
     "https://example.org/data.csv?monkey=12345678&zipcode=12345678&key=1&date=2026-01-01"),
])
def test_a_credential_in_a_urls_query_is_masked_wherever_the_url_goes(url: str, kept: str) -> None:
    from nbdeploy.base.redact import strip_url_password

    out, kinds = _kinds(f"df = pd.read_csv({url!r})")
    assert out == f"df = pd.read_csv({kept!r})"
    assert kinds == (["credential in a URL's query"] if kept != url else [])
    assert strip_url_password(url) == kept  # what lineage keeps as the read's path
    assert scrub({"path": url}, values=[]) == {"path": kept}
