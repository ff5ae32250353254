"""Data lineage: pandas reads and writes, hashed in full, with the cells that made them."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from blake3 import blake3

from nbdeploy.capture.lineage import _connection_url
from tests.conftest import run


def _start(ipshell, tmp_path: Path):
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                   "nbformat_minor": 5}))
    ipshell.run_line_magic("deploy", "init")
    from nbdeploy.capture.session import current_session

    return current_session()


def _blake3(path: Path) -> str:
    """An independent computation: the blake3 library on the whole file's bytes at once."""
    return "blake3:" + blake3(path.read_bytes()).hexdigest()


def test_reads_and_writes_are_recorded_once_per_role_with_every_cell(ipshell, tmp_path):
    pd.DataFrame({"x": range(50), "y": [f"k{i % 7}" for i in range(50)]}).to_csv(
        tmp_path / "in.csv", index=False)
    session = _start(ipshell, tmp_path)
    first = run(ipshell, "import pandas as pd\ndf = pd.read_csv('in.csv')").execution_count
    second = run(ipshell, "df2 = pd.read_csv('in.csv')").execution_count
    third = run(ipshell, "df.head(10).to_parquet('out.parquet')").execution_count
    rec = session.sync()
    entries = {(e["relative_path"], e["role"]): e for e in rec["lineage"]}
    assert set(entries) == {("in.csv", "read"), ("out.parquet", "write")}
    read = entries[("in.csv", "read")]
    assert read["cells"] == [first, second]
    assert read["hash"] == _blake3(tmp_path / "in.csv")
    assert read["bytes"] == (tmp_path / "in.csv").stat().st_size
    assert read["rows"] == 50
    assert read["columns"] == [{"name": "x", "dtype": "int64"}, {"name": "y", "dtype": "str"}]
    assert read["path"] == str(tmp_path / "in.csv")
    prof = read["profile"]["columns"]
    assert prof["x"]["min"] == 0 and prof["x"]["max"] == 49 and prof["y"]["distinct"] == 7
    write = entries[("out.parquet", "write")]
    assert write["cells"] == [third] and write["rows"] == 10
    assert write["hash"] == _blake3(tmp_path / "out.parquet")


def test_a_changed_file_gets_its_new_hash(ipshell, tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a\n1\n")
    session = _start(ipshell, tmp_path)
    run(ipshell, "import pandas as pd\npd.read_csv('d.csv')")
    first = session.sync()["lineage"][0]["hash"]
    f.write_text("a\n2\n")  # one byte
    run(ipshell, "pd.read_csv('d.csv')")
    (entry,) = session.sync()["lineage"]
    assert entry["hash"] == _blake3(f) != first


def test_sql_reads_keep_the_query_and_the_connection(ipshell, tmp_path):
    db = tmp_path / "sales.db"
    with sqlite3.connect(db) as con:
        con.execute("create table orders (id integer, amount real)")
        con.executemany("insert into orders values (?, ?)", [(1, 9.5), (2, 20.0)])
    session = _start(ipshell, tmp_path)
    run(ipshell, f"import sqlite3, pandas as pd\ncon = sqlite3.connect({str(db)!r})\n"
                 "orders = pd.read_sql('select id, amount from orders where amount > 1', con)")
    (entry,) = session.sync()["lineage"]
    assert entry["kind"] == "sql" and entry["rows"] == 2
    assert entry["query"] == "select id, amount from orders where amount > 1"
    assert entry["connection"] == f"sqlite:///{db}"


def test_connection_urls_lose_their_password():
    import sqlalchemy as sa

    url = sa.engine.make_url("postgresql://analyst:hunter2-pw@db.internal:5432/sales")

    class Engine:  # what pandas is handed: anything with a SQLAlchemy URL
        pass

    eng = Engine()
    eng.url = url
    assert _connection_url(eng) == "postgresql://analyst:***@db.internal:5432/sales"
    assert _connection_url("mysql://root:toor@localhost/db") == "mysql://root:***@localhost/db"


def test_pandas_imported_after_init_is_still_recorded(tmp_path):
    (tmp_path / "nb.ipynb").write_text("{}")
    (tmp_path / "a.csv").write_text("v\n1\n2\n")
    code = (
        "import sys\n"
        "from nbdeploy.capture.session import CaptureSession\n"
        "s = CaptureSession('nb.ipynb').start()\n"
        "assert 'pandas' not in sys.modules\n"
        "import pandas as pd\n"
        "pd.read_csv('a.csv')\n"
        "rec = s.sync()\n"
        "print(rec['lineage'][0]['rows'], rec['lineage'][0]['relative_path'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["2", "a.csv"]


_ORDERS = {
    # the cell's imports are scanned first, so capture's writer resolves them (a probe of
    # pandas' spec) while the import runs: the race seen on real notebooks
    "pandas alone": "import pandas as pd",
    "matplotlib first": "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nimport pandas as pd",
    "a probe first": "import importlib.util\nassert importlib.util.find_spec('pandas')\nimport pandas as pd",
    "two probes, then from-import": ("import importlib.util\nimportlib.util.find_spec('pandas')\n"
                                     "importlib.util.find_spec('pandas')\nfrom pandas import read_csv\nimport pandas as pd"),
    "sklearn first": "import sklearn.linear_model\nimport pandas as pd",
}


@pytest.mark.parametrize("order", sorted(_ORDERS))
def test_no_import_order_or_probe_loses_a_read(tmp_path, order):
    """Whatever comes before pandas (a probe of its spec, other libraries, capture's own
    writer resolving the cell's imports in its thread), the read is recorded."""
    (tmp_path / "nb.ipynb").write_text("{}")
    (tmp_path / "a.csv").write_text("v\n1\n2\n3\n")
    cell = _ORDERS[order] + "\npd.read_csv('a.csv')\n"
    code = (
        "import sys, threading, importlib.util\n"
        "from nbdeploy.capture.session import CaptureSession\n"
        "s = CaptureSession('nb.ipynb').start()\n"
        "assert 'pandas' not in sys.modules\n"
        f"s.scan({cell!r}, cell=1)\n"
        "s.request_flush()\n"  # the writer resolves the cell's imports now, racing the import below
        "stop = threading.Event()\n"
        "def probe():\n"
        "    while not stop.is_set():\n"
        "        importlib.util.find_spec('pandas')\n"
        "t = threading.Thread(target=probe); t.start()\n"
        f"exec({cell!r})\n"
        "stop.set(); t.join()\n"
        "rec = s.sync()\n"
        "print(len(rec['lineage']), rec['lineage'][0]['rows'], rec['lineage'][0]['relative_path'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "3", "a.csv"]


def test_a_probe_before_pandas_leaves_the_hook_armed():
    """The hook itself: a find_spec probe returns a spec and leaves the hook waiting."""
    code = (
        "import sys, importlib.util\n"
        "from nbdeploy.capture.lineage import _PostImportHook\n"
        "seen = []\n"
        "hook = _PostImportHook('pandas', seen.append)\n"
        "sys.meta_path.insert(0, hook)\n"
        "assert importlib.util.find_spec('pandas') is not None\n"
        "assert hook in sys.meta_path and not seen\n"
        "import pandas\n"
        "assert seen == [pandas] and hook not in sys.meta_path\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_pandas_patched_behind_the_hooks_back_is_caught_before_the_next_cell(ipshell, tmp_path):
    """The second line of defence: a kernel where pandas is already imported but unpatched
    (say, imported through a finder ahead of ours) gets patched before the next cell."""
    (tmp_path / "b.csv").write_text("w\n5\n")
    session = _start(ipshell, tmp_path)
    lineage = session.lineage
    lineage.uninstall()
    from nbdeploy.capture.lineage import _PostImportHook

    lineage._hook = _PostImportHook("pandas", lineage._patch)  # armed, but pandas is already in
    run(ipshell, "import pandas as pd\npd.read_csv('b.csv')")
    (entry,) = session.sync()["lineage"]
    assert entry["relative_path"] == "b.csv" and entry["rows"] == 1


@pytest.fixture
def http_folder(tmp_path: Path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; it refuses nbdeploy's own second
    download of files named refuse-*.csv (503), as a server limiting requests would."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if "refuse-" in self.path and self.headers.get("User-Agent") == "nbdeploy-lineage":
                self.send_error(503, "Service Unavailable")
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_read_is_hashed_in_full_and_its_token_never_recorded(ipshell, tmp_path, http_folder):
    www, base = http_folder
    pd.DataFrame({"x": range(300), "y": [f"k{i % 5}" for i in range(300)]}).to_csv(www / "train.csv", index=False)
    (www / "refuse-train.csv").write_bytes((www / "train.csv").read_bytes())
    token = "tok_9f8e7d6c5b4a3f2e1d0c"
    session = _start(ipshell, tmp_path)
    cell = run(ipshell, f"import pandas as pd\nURL = {base + '/train.csv?token=' + token!r}\n"
                        "df = pd.read_csv(URL)").execution_count
    run(ipshell, f"df2 = pd.read_csv({base + '/refuse-train.csv'!r})")
    rec = session.sync()
    entries = {e["path"].split("?")[0].rsplit("/", 1)[1]: e for e in rec["lineage"]}
    read = entries["train.csv"]
    assert read["kind"] == "url" and read["role"] == "read" and read["cells"] == [cell]
    assert read["path"] == f"{base}/train.csv?token=***"
    assert read["hash"] == _blake3(www / "train.csv") and read["bytes"] == (www / "train.csv").stat().st_size
    assert read["rows"] == 300 and read["note"] == "hashed from a second download of the URL, made beside pandas' read"
    # the server refused the second download: the read is kept, without a hash, and says why
    refused = entries["refuse-train.csv"]
    assert refused["rows"] == 300 and refused["hash"] is None
    assert refused["note"] == "not hashed: url could not be read again (HTTP 503 Service Unavailable)"
    assert token not in json.dumps(rec)
