"""Render the README's "Works with" table from the corpus' expected outcomes.

``python tests/realworld/works_with.py`` prints the section; ``--write`` replaces it in
README.md between its markers. tests/realworld/test_works_with.py fails when the README
and this rendering differ, so the table cannot drift from what the corpus proves.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from .expected import CORPUS, VERIFIED
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).parent))
    from expected import CORPUS, VERIFIED  # type: ignore[no-redef]

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- works-with:start -->", "<!-- works-with:end -->"


def _outcome(outcome: str) -> str:
    if outcome == VERIFIED:
        return "builds and verifies, no flags"
    return "one-line message: `" + outcome.replace("`", "'").replace("|", "\\|") + "`"


def render() -> str:
    """The section between the markers: one row per corpus notebook, verified ones first, in expected.py order."""
    rows = sorted(CORPUS.items(), key=lambda kv: kv[1].outcome != VERIFIED)  # stable: expected.py order
    lines = [START,
             "| notebook | libraries | model | result |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {c.kind} | {c.libraries} | {c.model} | {_outcome(c.outcome)} |" for _, c in rows]
    verified = sum(c.outcome == VERIFIED for c in CORPUS.values())
    lines += ["", f"{verified} of {len(CORPUS)} corpus notebooks (`tests/realworld/notebooks/`) build "
              "and verify with no flags; the others stop with the message shown. Generated from "
              "`tests/realworld/expected.py` by `python tests/realworld/works_with.py --write`.", END]
    return "\n".join(lines)


def current(readme: str) -> str:
    """The section as README.md holds it now ('' when the markers are missing)."""
    if START not in readme or END not in readme:
        return ""
    return readme[readme.index(START):readme.index(END) + len(END)]


def write(path: Path = README) -> None:
    text = path.read_text()
    old = current(text)
    if not old:
        raise SystemExit(f"{path} has no {START} ... {END} markers")
    path.write_text(text.replace(old, render()))


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(render())
