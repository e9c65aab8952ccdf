"""The Hub sub-commands of ``robbench``: submit, publish and the evaluation queue. Parsing and printing only."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from ..errors import quoted
from .terminal import add_run_flags, console, err_console, progress_bars, run_options, subcommands


def cmd_submit(args: argparse.Namespace) -> int:
    from ..config import load_model_spec
    from ..publishing.hub_publish import submit

    pinned = submit(load_model_spec(args.model_yaml), args.repo, Path(args.results_dir), private=args.private, license=args.license)
    err_console.print(f"uploaded to hub repo {pinned.repo}, commit {pinned.revision}; the pinned checkpoint:")
    console.print(str(pinned), highlight=False, soft_wrap=True)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from ..publishing.hub_publish import publish

    pinned = publish(args.repo, Path(args.results_dir), Path(args.site) if args.site else None, private=args.private)
    err_console.print(f"published to hub dataset repo {pinned.repo}, commit {pinned.revision}; render it with:")
    console.print(f"robbench leaderboard --from-hub {pinned.repo}@{pinned.revision}", highlight=False, soft_wrap=True)
    return 0


def cmd_queue_add(args: argparse.Namespace) -> int:
    from ..publishing.evaluation_queue import add

    threat_models = [args.threat_model] if args.threat_model else None
    for request in add(args.checkpoint, Path(args.queue_dir), threat_models, args.eps, Path(args.results_dir)):
        console.print(f"queued {request.id}", highlight=False)
    return 0


def cmd_queue_run(args: argparse.Namespace) -> int:
    from ..publishing.evaluation_queue import run

    options = run_options(args)
    failed = 0
    with progress_bars() as progress:
        for request in run(Path(args.queue_dir), options, progress=progress):
            failed += request.status == "FAILED"
            detail = request.reason if request.status == "FAILED" else ", ".join(request.results)
            console.print(f"{request.status} {request.id}: {detail}", highlight=False, markup=False, soft_wrap=True)
    if failed:
        err_console.print(f"robbench: error: {failed} request(s) failed; see `robbench queue status`", highlight=False)
    return 1 if failed else 0


def cmd_queue_status(args: argparse.Namespace) -> int:
    from ..publishing.evaluation_queue import read_queue
    from ..hub_ref import parse_checkpoint_ref

    queue_dir = Path(args.queue_dir)
    table = Table(title=f"evaluation queue {queue_dir}: what each request evaluates")
    for column in ("request", "model · dataset · architecture", "checkpoint", "threat model", "pinned", "status",
                   "reason / results", "updated (UTC)"):
        table.add_column(column, overflow="fold")
    for request in read_queue(queue_dir):
        detail = request.reason if request.status == "FAILED" else ", ".join(request.results)
        ref = parse_checkpoint_ref(request.checkpoint)
        spec = request.spec
        table.add_row(
            request.id, " · ".join(quoted(spec.get(key), 40) for key in ("name", "dataset", "architecture")),
            f"{ref.repo}@{ref.revision[:12]}/{ref.path}", f"{request.threat_model} eps={request.eps:g}",
            "EDITED: will be refused" if request.edited else request.pinned[:12], request.status, detail or "",
            request.updated[:19].replace("T", " "),
        )
    console.print(table)
    return 0


def add_hub_commands(sub: argparse._SubParsersAction) -> None:
    """``submit``, ``publish`` and ``queue``."""
    submit = sub.add_parser("submit", help="upload an evaluated model to the Hugging Face Hub; prints its pinned hf:// line")
    submit.add_argument("model_yaml", help="the model.yaml of a locally evaluated model")
    submit.add_argument("--repo", required=True, help="hub model repo ORG/NAME (created if need be)")
    submit.add_argument("--private", action="store_true", help="create the repo private")
    submit.add_argument("--license", default="unknown", help="the weights' license for the model card, a Hub license id such as mit (default: unknown)")
    add_run_flags(submit, ("results_dir",))  # where `robbench evaluate` wrote the model's records
    submit.set_defaults(func=cmd_submit)

    publish = sub.add_parser("publish", help="upload the result records (and a rendered site) to a Hub dataset repo, in one commit")
    publish.add_argument("--repo", required=True, help="hub dataset repo ORG/NAME (created if need be)")
    add_run_flags(publish, ("results_dir",))  # the records to publish
    publish.add_argument("--site", default=None, metavar="DIR", help="also publish this rendered site folder, under site/")
    publish.add_argument("--private", action="store_true", help="create the repo private")
    publish.set_defaults(func=cmd_publish)

    queue = sub.add_parser("queue", help="the evaluation queue for hub submissions (leaderboard maintainers)")
    queue_sub = subcommands(queue, "queue")
    queue_add = queue_sub.add_parser("add", help="queue hf://ORG/REPO@REVISION[/PATH.safetensors] for evaluation")
    queue_add.add_argument("checkpoint", help="the model's weights or repo, pinned: hf://ORG/REPO@REVISION[/PATH.safetensors]")
    queue_add.add_argument("--threat-model", default=None, help="one threat model (default: the model's, else the dataset's)")
    queue_add.add_argument("--eps", type=float, default=None, help="another radius (non-standard); needs --threat-model")
    add_run_flags(queue_add, ("results_dir",))  # the records whose names are taken: a name belongs to one source
    queue_add.set_defaults(func=cmd_queue_add)
    queue_run = queue_sub.add_parser("run", help="evaluate pending requests one by one, writing results")
    add_run_flags(queue_run)
    queue_run.set_defaults(func=cmd_queue_run)
    queue_status = queue_sub.add_parser("status", help="show every request and its status")
    queue_status.set_defaults(func=cmd_queue_status)
    for command in (queue_add, queue_run, queue_status):
        command.add_argument("--queue-dir", default="queue", help="folder of request files (default: queue)")
