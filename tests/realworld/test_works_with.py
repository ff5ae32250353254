"""README.md's "Works with" table is the rendering of the corpus' expected outcomes."""

from __future__ import annotations

from .works_with import README, current, render


def test_readme_table_equals_the_generated_one() -> None:
    assert current(README.read_text()) == render(), (
        "README.md's Works with table differs from tests/realworld/expected.py: "
        "run python tests/realworld/works_with.py --write")
