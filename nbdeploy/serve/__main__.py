"""``python -m nbdeploy.serve BUNDLE_DIR [--host H] [--port P] [--workers N] ...``"""

from __future__ import annotations

import argparse
import sys

from .config import FLAG_MODES, ServeConfig
from .errors import ServeError


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["score"]:
        return score_main(args_in[1:])
    if args_in[:1] == ["performance"]:
        return performance_main(args_in[1:])
    p = argparse.ArgumentParser(prog=f"python -m {__package__}", description="Serve an nbdeploy bundle "
                                f"(or score files with it: `python -m {__package__} score --help`).")
    p.add_argument("bundle", help="bundle folder (or an MLflow model folder)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--max-batch-size", type=int)
    p.add_argument("--max-wait-ms", type=float)
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--log-path", help='request log file ("" turns it off)')
    p.add_argument("--log-max-bytes", type=int, help="rotate the request log into a gzipped file past this size")
    p.add_argument("--log-keep", help="delete rotated request-log files older than this (7d, 12h, 30m; 0 = never)")
    p.add_argument("--flag-out-of-range", choices=FLAG_MODES)
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--shadow", metavar="BUNDLE",
                   help="a candidate bundle that gets every request's inputs after the answer (GET /shadow)")
    p.add_argument("--shadow-max-pending", type=int, help="shadow requests waiting before new ones are dropped")
    p.add_argument("--canary", metavar="BUNDLE", help="a candidate bundle that answers --canary-percent of requests")
    p.add_argument("--canary-percent", type=float, help="share of requests the canary answers (default 10)")
    p.add_argument("--canary-key-header", metavar="HEADER",
                   help="a request header whose value keeps a client on one version (sticky canary)")
    p.add_argument("--check", action="store_true",
                   help="load the model, predict the input example, exit (an image build runs this: it proves "
                        "the model loads there and fills the start-up cache)")
    p.add_argument("--compile", action="store_true",
                   help="with --check: also write the bytecode of every module it imported that has none "
                        "(an image whose base ships no .pyc files then starts faster)")
    p.add_argument("--replay", metavar="REQUESTS.jsonl",
                   help="send the answered requests of this request log to BUNDLE (a candidate) and print how its "
                        "answers compare with the logged ones; exit")
    p.add_argument("--json", action="store_true", help="with --replay: the report as JSON")
    args = vars(p.parse_args(args_in))
    bundle = args.pop("bundle")
    check_only, compile_ = args.pop("check"), args.pop("compile")
    replay_log, as_json = args.pop("replay"), args.pop("json")
    from .server import check, run

    if compile_ and not check_only:
        p.error("--compile goes with --check")
    try:
        if replay_log:  # what `nbdeploy compare --replay` runs, for a bundle on its own
            import json

            from .compare import replay, text

            doc = replay(replay_log, bundle, ServeConfig.from_env(**args))
            print(json.dumps(doc, indent=2, default=str) if as_json else text(doc))
            return 0
        if check_only:
            print(check(bundle, ServeConfig.from_env(**args), compile_imported=compile_))
            return 0
        run(bundle, ServeConfig.from_env(**args))
    except ServeError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    return 0


def score_main(argv: list[str]) -> int:
    """``score BUNDLE INPUT -o OUTPUT [--chunk-rows N] [--id COLUMN] [--threads N]``: batch scoring in this process."""
    p = argparse.ArgumentParser(prog=f"python -m {__package__} score",
                                description="Score CSV/Parquet files with the bundle's model and the API's validation.")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("input", help="a CSV or Parquet file, a folder or a glob of them, or a URL (fsspec)")
    p.add_argument("-o", "--output", required=True, help="output file (.csv or .parquet)")
    p.add_argument("--chunk-rows", type=int, default=None, help="rows read and scored at a time")
    p.add_argument("--id", dest="id_column", help="keep only this id column beside the predictions")
    p.add_argument("--threads", type=int, default=None, help="scoring threads (default: one per CPU for a "
                   "compiled program, else 1)")
    args = p.parse_args(argv)
    from .score_io import one_blas_thread

    one_blas_thread()
    from .score_run import DEFAULT_CHUNK_ROWS, score_files

    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    try:
        summary = score_files(args.bundle, args.input, args.output, chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS,
                              id_column=args.id_column, threads=args.threads)
    except ServeError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    print(summary.text())
    return 0


def performance_main(argv: list[str]) -> int:
    """``performance LOG [--feedback FILE] [--json]``: what ``nbdeploy performance LOG`` prints,
    for a bundle on its own."""
    p = argparse.ArgumentParser(prog=f"python -m {__package__} performance",
                                description="Live accuracy (or MAE/RMSE) per version from the labels in a request "
                                            "log (POST /feedback) or a feedback file, against training.")
    p.add_argument("log", help="the request log (--log-path)")
    p.add_argument("--feedback", metavar="FILE", help="labels kept beside it: JSON lines or CSV of request_id,label")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    args = p.parse_args(argv)
    import json

    from .feedback import performance_log
    from .performance import text

    try:
        doc = performance_log(args.log, args.feedback)
    except ServeError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2, default=str) if args.json else text(doc, f"performance of {args.log}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
