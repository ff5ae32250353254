"""One comparison of a reproduced run against its baseline: what was checked and how it came out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

CheckKind = Literal["status", "input", "output", "metric", "prediction"]
CheckStatus = Literal["matched", "differed", "missing", "new", "skipped"]
MATCHED: CheckStatus = "matched"
DIFFERED: CheckStatus = "differed"
MISSING: CheckStatus = "missing"
NEW: CheckStatus = "new"
SKIPPED: CheckStatus = "skipped"


@dataclass
class Check:
    kind: CheckKind
    name: str
    status: CheckStatus
    expected: Any = None
    actual: Any = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in (DIFFERED, MISSING)
