"""Content hashes: full-content BLAKE3 for lineage, SHA-256 for the rest, both said in the record."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from blake3 import blake3

from nbdeploy.capture.hashing import (
    content_hash,
    recorded_hash,
    sha256_file,
    short_hash,
)


def _blake3(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


@pytest.mark.parametrize("size", [0, 1, 1023, 8 << 20, (8 << 20) + 4097, (17 << 20) + 5])
def test_lineage_hash_is_blake3_of_the_whole_file(tmp_path: Path, size: int):
    data = os.urandom(size)  # sizes around the 8 MiB read chunk and BLAKE3's 1 KiB chunk
    f = tmp_path / "d.bin"
    f.write_bytes(data)
    assert content_hash(f) == (_blake3(data), size)


def test_one_changed_byte_anywhere_changes_the_hash(tmp_path: Path):
    data = bytearray(os.urandom((8 << 20) + 100))
    f = tmp_path / "d.csv"
    f.write_bytes(data)
    before, _ = content_hash(f)
    for pos in (0, len(data) // 2, (8 << 20) - 1, 8 << 20, len(data) - 1):
        edited = bytearray(data)
        edited[pos] ^= 0x01
        f.write_bytes(edited)
        after, size = content_hash(f)
        assert after != before and after == _blake3(bytes(edited)) and size == len(data), pos


def test_sha256_matches_sha256sum(tmp_path: Path):
    f = tmp_path / "nb.ipynb"
    f.write_bytes(os.urandom(100_000))
    out = subprocess.run(["sha256sum", str(f)], capture_output=True, text=True, check=True)
    assert sha256_file(f) == (out.stdout.split()[0], 100_000)
    assert content_hash(f, "sha256") == (f"sha256:{out.stdout.split()[0]}", 100_000)


def test_a_folder_is_hashed_by_its_files_names_and_contents(tmp_path: Path):
    ds = tmp_path / "ds.parquet"
    (ds / "part=1").mkdir(parents=True)
    (ds / "part=1" / "a.parquet").write_bytes(b"one")
    (ds / "b.parquet").write_bytes(b"two")
    expected = blake3(b"b.parquet\0" + blake3(b"two").hexdigest().encode() + b"\n"
                      + b"part=1/a.parquet\0" + blake3(b"one").hexdigest().encode() + b"\n")
    assert content_hash(ds) == ("blake3:" + expected.hexdigest(), 6)
    (ds / "b.parquet").write_bytes(b"twO")
    assert content_hash(ds)[0] != "blake3:" + expected.hexdigest()
    (ds / "b.parquet").write_bytes(b"two")
    (ds / "b.parquet").rename(ds / "c.parquet")
    assert content_hash(ds)[0] != "blake3:" + expected.hexdigest()


def test_an_unknown_algorithm_is_refused(tmp_path: Path):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown hash algorithm 'md5'"):
        content_hash(tmp_path / "f", "md5")


def test_records_of_both_formats_are_read():
    assert recorded_hash({"hash": "blake3:" + "a" * 64}) == "blake3:" + "a" * 64
    assert recorded_hash({"sha256": "b" * 64}) == "sha256:" + "b" * 64  # nbdeploy.capture/1
    assert recorded_hash({"sha256": None}) is None and recorded_hash({}) is None
    assert short_hash("blake3:" + "0123456789abcdef" * 4) == "blake3:0123456789ab"
    assert short_hash(None) == "-"


def test_sha256_of_a_file_is_what_hashlib_says(tmp_path: Path):
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    assert sha256_file(f)[0] == hashlib.sha256(b"x = 1\n").hexdigest()


def test_what_cannot_be_mapped_is_read(tmp_path: Path):
    data = os.urandom(50_000)  # fits a pipe's buffer: written before it is read
    r, w = os.pipe()
    try:
        os.write(w, data)
        os.close(w)
        assert content_hash(f"/dev/fd/{r}") == (_blake3(data), len(data))
    finally:
        os.close(r)
