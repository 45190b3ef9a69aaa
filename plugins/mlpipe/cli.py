"""``mlpipe``: run a step by hand or from a runtime, start a run, profile data, summarize a run.

    python -m mlpipe step train --run file:///.../loan_default/runs/manual_1
    python -m mlpipe start dags/pipelines/loan_default.yaml --run-id manual_1
    python -m mlpipe profile dags/pipelines/loan_default.yaml
    python -m mlpipe summary --latest loan_default
    python -m mlpipe rollback loan_default --reason "bad calibration"
    python -m mlpipe serve dags/pipelines/loan_default.yaml --port 8000
    python -m mlpipe synth --rows 1000000 --output s3://bucket/synth/1m --seed 7

Errors a user can fix (a bad spec, missing data, failed validation) print one
clear message and exit with status 2. A service that is unavailable for now (the MLflow
tracking server does not answer, the promotion lease stays held) prints one message and
exits with status 3, which the runtimes retry. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from mlpipe.core import spec, uris
from mlpipe.core.errors import CRASH, exit_status, failure
from mlpipe.data.profile import ensure_profile
from mlpipe.data.synth import synth
from mlpipe.registry import tracking
from mlpipe.registry.rollback import rollback
from mlpipe.steps import run_step
from mlpipe.store import runs
from mlpipe.summary import summarize


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlpipe", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    step = commands.add_parser("step", help="run one step of a run")
    step.add_argument("name")
    step.add_argument("--run", required=True, help="the run folder URI")
    step.add_argument("--shard", type=int, help="which worker of a sharded step (e.g. tuning trials)")

    start = commands.add_parser("start", help="start a run: write its resolved spec.json")
    start.add_argument("spec", help="pipeline spec YAML")
    start.add_argument("--run-id", required=True)
    start.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                       help="override a spec field, e.g. --set data.source='\"s3://b/k.csv\"'")

    profile = commands.add_parser("profile", help="write the reference profile of a spec's data")
    profile.add_argument("spec", help="pipeline spec YAML")
    profile.add_argument("--output", help="where to write it (default: the spec's validation.profile)")
    profile.add_argument("--keep", action="store_true", help="keep the spec's profile when it exists already "
                                                             "(write only a missing one)")

    rollback = commands.add_parser("rollback", help="give the champion alias back to the previous champion")
    rollback.add_argument("model", help="registered model name (the pipeline name unless the spec says otherwise)")
    rollback.add_argument("--reason", default="manual rollback", help="recorded in the audit log")
    rollback.add_argument("--by", default=None, help="who asked (default: $USER); recorded in the audit log")

    serve = commands.add_parser("serve", help="serve a registered model over HTTP (FastAPI + uvicorn)")
    serve.add_argument("spec", help="pipeline spec YAML (model name and serving settings)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    synth = commands.add_parser("synth", help="write seeded synthetic loans shaped like the bundled data")
    synth.add_argument("--rows", type=int, required=True, help="how many rows in all")
    synth.add_argument("--output", required=True, help="folder URI for part-NNNNN.parquet (file:// or s3://)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--part-rows", type=int, default=500_000, help="the most rows in one part (and in memory)")

    summary = commands.add_parser("summary", help="print what a run produced")
    which = summary.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="the run folder URI")
    which.add_argument("--latest", metavar="PIPELINE", help="the most recent run of this pipeline")
    summary.add_argument("--kind", choices=[runs.TRAINING, runs.SCORING, runs.MONITORING], default=runs.TRAINING,
                         help="with --latest: which kind of run (training 'runs', 'scoring', 'monitoring')")
    return parser


def _overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        field, _, text = pair.partition("=")
        try:
            overrides[field] = json.loads(text)
        except json.JSONDecodeError:
            overrides[field] = text
    return overrides


def _command(args: argparse.Namespace) -> object:
    if args.command == "step":
        return run_step(args.name, uris.normalize(args.run), args.shard)
    if args.command == "start":
        resolved = spec.with_overrides(spec.load(args.spec), _overrides(args.set))
        return runs.start(resolved, args.run_id)
    if args.command == "profile":
        pipeline = spec.load(args.spec)
        return ensure_profile(pipeline, args.output, keep=args.keep)
    if args.command == "rollback":
        return rollback(args.model, reason=args.reason, actor=args.by)
    if args.command == "serve":
        from mlpipe.serving.app import serve

        return serve(spec.load(args.spec), host=args.host, port=args.port)
    if args.command == "synth":
        return synth(args.rows, args.output, seed=args.seed, part_rows=args.part_rows)
    return summarize(uris.normalize(args.run) if args.run else runs.latest(args.latest, kind=args.kind))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    tracking.bound_http_retries()
    try:
        output = _command(args)
    except Exception as error:  # one line for what the user can fix or retry (as a failed step records it)
        kind, message = failure(tracking.classified(error))
        if kind == CRASH:
            raise
        print(f"mlpipe {args.command}: error: {message}", file=sys.stderr)
        return exit_status(kind)
    print(output if isinstance(output, str) else json.dumps(output, indent=2, default=str))
    return 0
