"""Settings of the server: one dataclass, overridable by ``NBDEPLOY_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ServeError
from .logfiles import parse_keep

FLAG_MODES = ("header", "body", "both", "off")


@dataclass
class ServeConfig:
    """How to serve a bundle. Every field can be set by ``NBDEPLOY_<FIELD>`` (see docs/serve.md)."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    #: rows in one ``predict`` call (a single request larger than this is never split)
    max_batch_size: int = 1024
    #: extra wait, in ms, for requests already being read when a batch is formed
    max_wait_ms: float = 2.0
    max_body_bytes: int = 10 * 1024 * 1024
    #: run predict on the event loop when it takes less than this (ms, moving average); 0 = always a thread
    inline_predict_ms: float = 20.0
    #: JSON-lines request log; "" turns request logging off
    log_path: str = "nbdeploy-requests.jsonl"
    #: the log rotates past this size into a gzipped file named with the time
    log_max_bytes: int = 50 * 1024 * 1024
    #: rotated files are deleted once their newest record is older than this (7d, 12h, 30m; 0 = never);
    #: every deleted record is counted in nbdeploy_requestlog_dropped_total{reason="retention"}
    log_keep: str = "7d"
    #: record request inputs and outputs in the log (off for sensitive data)
    log_payloads: bool = True
    #: also log health probes and /metrics scrapes
    log_probes: bool = False
    #: where out-of-range / unseen values are reported: header, body, both or off
    flag_out_of_range: str = "header"
    #: numeric range accepted silently = [min, max] widened by this fraction of (max - min)
    range_margin: float = 0.05
    #: the drift report (GET /drift) covers the last drift_window to 2 x drift_window rows; 0 = off
    drift_window: int = 10_000
    #: bearer token; when set every endpoint but the health probes requires it
    token: str | None = field(default=None, repr=False)
    log_level: str = "warning"
    #: seconds to wait for in-flight requests on SIGTERM
    graceful_timeout: float = 30.0
    #: a second bundle that sees every request's inputs off the request path ("" = none)
    shadow: str = ""
    #: shadow requests waiting for the shadow model; past this, new ones are dropped (and counted)
    shadow_max_pending: int = 256
    #: a second bundle that answers ``canary_percent`` of the requests ("" = none)
    canary: str = ""
    canary_percent: float = 10.0
    #: a request header whose value keeps a client on one version (sticky canary); "" = random per request
    canary_key_header: str = ""

    def __post_init__(self) -> None:
        if self.flag_out_of_range not in FLAG_MODES:
            raise ServeError(
                f"flag_out_of_range must be one of {', '.join(FLAG_MODES)}, not {self.flag_out_of_range!r}"
            )
        if self.workers < 1:
            raise ServeError(f"workers must be at least 1, not {self.workers}")
        if self.max_batch_size < 1:
            raise ServeError(f"max_batch_size must be at least 1, not {self.max_batch_size}")
        if self.drift_window < 0:
            raise ServeError(f"drift_window must be 0 (off) or more, not {self.drift_window}")
        if self.max_body_bytes < 1:
            raise ServeError(f"max_body_bytes must be positive, not {self.max_body_bytes}")
        if not 0 <= self.canary_percent <= 100:
            raise ServeError(f"canary_percent must be between 0 and 100, not {self.canary_percent}")
        if self.log_max_bytes < 1:
            raise ServeError(f"log_max_bytes must be positive, not {self.log_max_bytes}")
        try:
            parse_keep(self.log_keep)
        except ValueError as e:
            raise ServeError(f"log_keep: {e}") from None
        if self.shadow_max_pending < 1:
            raise ServeError(f"shadow_max_pending must be at least 1, not {self.shadow_max_pending}")

    @property
    def log_keep_seconds(self) -> float:
        """``log_keep`` in seconds (0: rotated files are kept for ever)."""
        return parse_keep(self.log_keep)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ServeConfig:
        """Defaults, then ``NBDEPLOY_*`` variables, then ``overrides`` (None values are ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = "NBDEPLOY_API_TOKEN" if f.name == "token" else f"NBDEPLOY_{f.name.upper()}"
            if name in env:
                values[f.name] = _parse(f.name, name, env[name], f.default)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _parse(field_name: str, var: str, raw: str, default: Any) -> Any:
    if field_name == "token":
        return raw or None
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ServeError(
            f"{var}={raw!r} is not a valid {type(default).__name__}",
            hint=f"unset {var} or give it a valid value",
        ) from None
    return raw
