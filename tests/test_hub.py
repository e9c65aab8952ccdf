"""Hub submissions end to end, against the local hub-protocol server in ``tests/hub_server.py``.

huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE once, at import, so hub
commands run in a subprocess with their own environment, as a user's would (several commands share
one interpreter, to import torch once). No test leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from robbench.errors import RobbenchError

from .helpers import RunsCode
from .hub_server import HubServer

TOKEN = "hf_robbench_test_token"
REPO = "robbench-test/fmnist-linear"
FAST = ["--attacks", "pgd", "--n-examples", "50", "--device", "cpu", "--threat-model", "linf"]
PINNED = re.compile(r"^hf://models/robbench-test/fmnist-linear@([0-9a-f]{40})/model\.safetensors$")


@pytest.fixture(scope="module")
def hub():
    with HubServer(TOKEN, limit_s=900) as server:
        yield server


def hub_env(server: HubServer, cache: Path, offline: bool = False) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": server.url, "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf-home"),
        "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_HUB_DISABLE_XET": "1",  # the test hub speaks the LFS protocol, not Xet
        "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
        "COLUMNS": "250",  # rich tables unwrapped
    }


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


DRIVER = """
import contextlib, io, json, sys
from robbench.cli import main
done = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    done.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(done))
"""


def robbench(env: dict[str, str], cwd: Path, *commands: list[str]) -> list[Done]:
    """Run ``robbench ARGS...`` for each command, in order, in one fresh interpreter with ``env``."""
    ran = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(commands)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    return [Done(*item) for item in json.loads(ran.stdout.splitlines()[-1])]


def one_line_error(done: Done) -> str:
    """The error line, the only line on stderr besides announced downloads."""
    lines = [line for line in done.stderr.strip().splitlines() if not line.endswith("(set ROBBENCH_OFFLINE=1 to never download)")]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("robbench: error: "), done.stderr
    return lines[0]


def hub_yaml(folder: Path, local_yaml: Path, checkpoint: str, **changes) -> Path:
    """A model.yaml like ``local_yaml`` whose weights come from the hub."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(local_yaml.read_text()), "checkpoint": checkpoint, **changes}))
    return path


def record(results: Path) -> dict:
    (path,) = (results / "fashion-mnist" / "linf" / "fmnist-linear").glob("*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def published(hub, linear_submission, tmp_path_factory):
    """The linear model evaluated locally, then submitted to a private repo: (pinned hf:// line, local record).

    The record's file (with its .adv.npz beside it) is ``published_files[0]``."""
    work = tmp_path_factory.mktemp("submit")
    evaluated, done = robbench(  # a fresh interpreter like the hub evaluations below: no state left by other tests
        hub_env(hub, work / "cache"), work,
        ["evaluate", str(linear_submission), *FAST, "--results-dir", str(work / "results")],
        ["submit", str(linear_submission), "--repo", REPO, "--private", "--license", "mit", "--results-dir", str(work / "results")],
    )
    assert evaluated.returncode == 0 and done.returncode == 0, evaluated.stderr + done.stderr
    published_files[:] = list((work / "results").rglob("*.json"))
    return done.stdout.strip().splitlines()[-1], record(work / "results")


published_files: list[Path] = []


@pytest.mark.slow
def test_submit_uploads_weights_spec_and_model_card(hub, published):
    from huggingface_hub import ModelCard

    pinned, local = published
    commit = PINNED.match(pinned).group(1)
    repo = hub.hub.repos[REPO]
    assert repo.private  # downloads below authenticate with HF_TOKEN
    spec = yaml.safe_load(repo.commits[commit]["model.yaml"])
    assert spec["checkpoint"] == "model.safetensors" and spec["sha256"] == local["config"]["checkpoint"]["sha256"]
    head = repo.commits[repo.refs["main"]]  # the card comes in the commit after the weights it names
    assert head["model.safetensors"] == repo.commits[commit]["model.safetensors"]
    card = ModelCard(head["README.md"].decode())
    assert (card.data.license, card.data.library_name, card.data.datasets) == ("mit", "robbench", ["zalando-datasets/fashion_mnist"])
    assert card.data.model_name == "fmnist-linear" and pinned in card.text and "<" not in card.text
    clean, robust = card.data.eval_results
    assert (clean.task_type, clean.dataset_type, clean.dataset_name, clean.dataset_split) == (
        "image-classification", "zalando-datasets/fashion_mnist", "fashion-mnist", "test")
    assert (clean.metric_name, clean.metric_value, clean.verified) == ("clean accuracy", round(100 * local["clean_accuracy"], 2), False)
    assert robust.metric_name == "robust accuracy (Linf, eps=0.1)" and robust.metric_value == round(100 * local["robust_accuracy"], 2)
    assert robust.metric_args == {
        "threat_model": "linf", "norm": "Linf", "eps": 0.1, "attacks": ["pgd"], "n_examples": 50, "seed": 0,
        "flags": [flag["code"] for flag in local["flags"]],
    }
    assert local["flags"] and all(f["code"] in card.text for f in local["flags"])  # 50 examples: at least the subset flag


@pytest.mark.slow
def test_evaluation_from_the_hub_at_the_printed_sha_reproduces_the_local_result(hub, published, linear_submission, tmp_path):
    pinned, local = published
    spec = hub_yaml(tmp_path / "from-hub", linear_submission, pinned)
    [done] = robbench(hub_env(hub, tmp_path / "cache"), tmp_path, ["evaluate", str(spec), *FAST, "--results-dir", str(tmp_path / "results")])
    assert done.returncode == 0, done.stderr
    remote = record(tmp_path / "results")
    for key in ("clean_accuracy", "robust_accuracy", "attacks", "evidence", "parameter_count"):
        assert remote[key] == local[key], key
    for key in ("examples", "device", "data_sha256"):
        assert remote["config"][key] == local["config"][key], key
    assert remote["config"]["checkpoint"] == {
        "path": pinned, "sha256": local["config"]["checkpoint"]["sha256"], "repo": REPO, "revision": PINNED.match(pinned).group(1),
    }


@pytest.mark.slow
def test_a_branch_resolves_to_a_commit_and_a_cached_model_evaluates_offline(hub, published, linear_submission, tmp_path):
    pinned, local = published
    spec = hub_yaml(tmp_path / "main", linear_submission, f"hf://{REPO}@main/model.safetensors")
    cache = tmp_path / "cache"
    [online] = robbench(hub_env(hub, cache), tmp_path, ["evaluate", str(spec), *FAST, "--results-dir", str(tmp_path / "online")])
    assert online.returncode == 0, online.stderr
    head = hub.hub.repos[REPO].refs["main"]  # the model card's commit, after the weights' one
    assert record(tmp_path / "online")["config"]["checkpoint"]["path"] == f"hf://models/{REPO}@{head}/model.safetensors"  # @main: its sha
    requests_before = len(hub.hub.requests)
    offline, missing = robbench(
        hub_env(hub, cache, offline=True), tmp_path,
        ["evaluate", str(spec), *FAST, "--results-dir", str(tmp_path / "offline")],
        ["evaluate", str(hub_yaml(tmp_path / "other", linear_submission, f"hf://{REPO}@v2/model.safetensors")), *FAST],
    )
    assert offline.returncode == 0, offline.stderr
    assert len(hub.hub.requests) == requests_before  # not one request: everything came from the cache
    remote = record(tmp_path / "offline")
    assert (remote["clean_accuracy"], remote["robust_accuracy"], remote["config"]["checkpoint"]) == (
        local["clean_accuracy"], local["robust_accuracy"], record(tmp_path / "online")["config"]["checkpoint"],
    )
    assert "not in the local hub cache" in one_line_error(missing)


def seed_repo(hub: HubServer, repo: str, folder: Path, spec_changes: dict | None = None, **files: bytes) -> str:
    """A repo holding the linear weights and their model.yaml (with ``spec_changes``, plus ``files``), committed on main."""
    spec = {**yaml.safe_load((folder / "model.yaml").read_text()), **(spec_changes or {})}
    weights = (folder / "model.safetensors").read_bytes()
    return hub.hub.commit(repo, {"model.safetensors": weights, "model.yaml": yaml.safe_dump(spec).encode(), **files})


@pytest.mark.slow
def test_a_tampered_download_is_refused_and_nothing_is_evaluated(hub, linear_submission, tmp_path):
    seed_repo(hub, "robbench-test/tampered", linear_submission.parent)
    hub.hub.tampered.add(("robbench-test/tampered", "model.safetensors"))
    spec = hub_yaml(tmp_path / "spec", linear_submission, "hf://robbench-test/tampered@main/model.safetensors")
    [done] = robbench(hub_env(hub, tmp_path / "cache"), tmp_path, ["evaluate", str(spec), *FAST, "--results-dir", str(tmp_path / "results")])
    assert "refusing the download" in one_line_error(done)
    assert not (tmp_path / "results").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.stat().st_size > 1000]  # bad copy dropped


@pytest.mark.slow
def test_pickles_and_code_in_a_repo_are_never_downloaded(hub, linear_submission, tmp_path):
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump({"weight": RunsCode(tmp_path / "pwned")}, handle)
    evil = (tmp_path / "evil.pkl").read_bytes()
    seed_repo(hub, "robbench-test/mixed", linear_submission.parent, **{"evil.pkl": evil, "pytorch_model.bin": evil, "modeling.py": b"open('pwned', 'w')\n"})
    good, *bad = robbench(
        hub_env(hub, tmp_path / "cache"), tmp_path,
        ["evaluate", str(hub_yaml(tmp_path / "good", linear_submission, "hf://robbench-test/mixed@main/model.safetensors")), *FAST,
         "--results-dir", str(tmp_path / "results")],
        *[["evaluate", str(hub_yaml(tmp_path / f"spec-{name}", linear_submission, f"hf://robbench-test/mixed@main/{name}")), *FAST]
          for name in ("evil.pkl", "pytorch_model.bin", "modeling.py")],
    )
    assert good.returncode == 0, good.stderr
    assert all("fetches only .safetensors weights" in one_line_error(done) for done in bad)
    assert not any(hub.requested(name) for name in ("evil.pkl", "pytorch_model.bin", "modeling.py"))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_missing_revision_file_or_repo_and_missing_results_are_one_line_errors(hub, linear_submission, tmp_path):
    seed_repo(hub, "robbench-test/errors", linear_submission.parent)
    cases = {
        "@no-such-branch/model.safetensors": "has no revision 'no-such-branch'",
        "@main/other.safetensors": "has no file other.safetensors",
        f"@{'a' * 40}/model.safetensors": f"has no revision '{'a' * 40}'",
        "/model.safetensors": "add @REVISION",
    }
    specs = [hub_yaml(tmp_path / f"case{i}", linear_submission, f"hf://robbench-test/errors{tail}") for i, tail in enumerate(cases)]
    pin = hub_yaml(tmp_path / "pin", linear_submission, "hf://robbench-test/errors@main/model.safetensors", sha256="0" * 64)
    *missing, unknown, pinned = robbench(
        hub_env(hub, tmp_path / "cache"), tmp_path,
        *[["evaluate", str(spec), *FAST] for spec in specs],
        ["queue", "add", "hf://robbench-test/nope@main/model.safetensors", "--queue-dir", str(tmp_path / "queue")],
        ["evaluate", str(pin), *FAST],
    )
    for done, fragment in zip(missing, cases.values()):
        assert fragment in one_line_error(done)
    assert "hub repo robbench-test/nope not found" in one_line_error(unknown)
    assert "model.yaml pins 0000" in one_line_error(pinned)
    requests_before = len(hub.hub.requests)
    [unevaluated] = robbench(
        hub_env(hub, tmp_path / "cache"), tmp_path,
        ["submit", str(linear_submission), "--repo", "robbench-test/new", "--results-dir", str(tmp_path / "none")],
    )
    assert "no results for fmnist-linear" in one_line_error(unevaluated)
    assert len(hub.hub.requests) == requests_before and "robbench-test/new" not in hub.hub.repos


@pytest.mark.slow
def test_queue_add_run_status_with_duplicates_failures_and_a_crashed_run(hub, linear_submission, tmp_path):
    commit = seed_repo(hub, "robbench-test/queued", linear_submission.parent)
    seed_repo(hub, "robbench-test/broken", linear_submission.parent, {"name": "fmnist-linear-broken"})
    hub.hub.tampered.add(("robbench-test/broken", "model.safetensors"))
    env, queue = hub_env(hub, tmp_path / "cache"), ["--queue-dir", str(tmp_path / "queue")]
    add = ["queue", "add", "--threat-model", "linf", *queue]
    added, again, broken = robbench(
        env, tmp_path,
        [*add, "hf://robbench-test/queued@main/model.safetensors"],
        [*add, f"hf://robbench-test/queued@{commit}"],  # the repo: its model.yaml names the weights
        [*add, "hf://robbench-test/broken@main/model.safetensors"],
    )
    request_id = f"fmnist-linear-linf-{commit[:12]}"
    assert added.returncode == 0 and added.stdout.split() == ["queued", request_id], added.stderr
    assert "already queued" in one_line_error(again)
    assert broken.returncode == 0, broken.stderr

    path = tmp_path / "queue" / f"{request_id}.json"
    request = json.loads(path.read_text())
    assert request["status"] == "PENDING" and request["checkpoint"] == f"hf://models/robbench-test/queued@{commit}/model.safetensors"
    path.write_text(json.dumps({**request, "status": "RUNNING"}))  # as a run that crashed mid-evaluation leaves it
    ran, status, readd = robbench(
        env, tmp_path,
        ["queue", "run", "--attacks", "pgd", "--n-examples", "50", "--device", "cpu", "--results-dir", str(tmp_path / "results"), *queue],
        ["queue", "status", *queue],
        [*add, "hf://robbench-test/broken@main/model.safetensors"],
    )
    assert ran.returncode == 1 and "1 request(s) failed" in ran.stderr
    assert re.search(r"^FAILED fmnist-linear-broken-linf-\w+: .*refusing the download", ran.stdout, re.M), ran.stdout
    statuses = {r["id"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "queue").glob("*.json"))}
    assert statuses[request_id]["status"] == "FINISHED"
    result = record(tmp_path / "results")
    assert (result["config"]["checkpoint"]["repo"], result["config"]["checkpoint"]["revision"]) == ("robbench-test/queued", commit)
    assert status.returncode == 0 and "FINISHED" in status.stdout and "FAILED" in status.stdout
    assert readd.returncode == 0, readd.stderr  # a FAILED request may be queued again
    [requeued] = [r for r in (json.loads(p.read_text()) for p in (tmp_path / "queue").glob("*.json")) if "broken" in r["checkpoint"]]
    assert requeued["status"] == "PENDING"


@pytest.mark.slow
def test_the_queue_never_lets_a_name_change_hands_nor_runs_an_edited_request(hub, published, linear_submission, tmp_path):
    folder = linear_submission.parent
    seed_repo(hub, "robbench-test/owner", folder)  # fmnist-linear
    seed_repo(hub, "robbench-test/squatter", folder)  # the same name from another repo
    seed_repo(hub, "robbench-test/npz", folder, {"name": "fmnist-npz", "dataset": "npz", "dataset_kwargs": {"path": "/etc/x.npz"}})
    seed_repo(hub, "robbench-test/late", folder, {"name": "fmnist-late"})
    seed_repo(hub, "robbench-test/edited", folder, {"name": "fmnist-edited"})
    env, results, queue = hub_env(hub, tmp_path / "cache"), tmp_path / "results", ["--queue-dir", str(tmp_path / "queue")]
    add = ["queue", "add", "--threat-model", "linf", "--results-dir", str(results), *queue]
    hf = "hf://robbench-test/{}@main/model.safetensors".format
    owner, squatter_queued, npz, late, edited = robbench(
        env, tmp_path, [*add, hf("owner")], [*add, hf("squatter")], [*add, hf("npz")], [*add, hf("late")], [*add, hf("edited")],
    )
    assert owner.returncode == late.returncode == edited.returncode == 0, owner.stderr + late.stderr + edited.stderr
    assert ("the name 'fmnist-linear' belongs to hub repo robbench-test/owner: the queued request fmnist-linear-linf-"
            in one_line_error(squatter_queued))
    assert "dataset_kwargs 'path' of dataset 'npz' cannot come from a hub submission" in one_line_error(npz)

    # meanwhile: a local evaluation takes the name fmnist-late, and someone edits a queued request
    planted = results / "fashion-mnist" / "linf" / "fmnist-late" / "planted.json"
    planted.parent.mkdir(parents=True)
    planted.write_text(json.dumps({**published[1], "config": {**published[1]["config"], "name": "fmnist-late"}}))
    planted_bytes = planted.read_bytes()
    [edited_path] = (tmp_path / "queue").glob("fmnist-edited-*.json")
    request = json.loads(edited_path.read_text())
    edited_path.write_text(json.dumps({**request, "spec": {**request["spec"], "dataset": "npz", "dataset_kwargs": {"path": "/etc/x.npz"}}}))

    status, ran, squatter_recorded = robbench(
        env, tmp_path, ["queue", "status", *queue],
        ["queue", "run", "--attacks", "pgd", "--n-examples", "50", "--device", "cpu", "--results-dir", str(results), *queue],
        [*add, hf("squatter")],
    )
    [edited_row] = [line for line in status.stdout.splitlines() if "fmnist-edited" in line]
    assert "EDITED: will be refused" in edited_row and "'npz'" in edited_row
    assert ran.returncode == 1 and "2 request(s) failed" in ran.stderr
    assert re.search(r"^FINISHED fmnist-linear-linf-\w+: ", ran.stdout, re.M), ran.stdout
    assert re.search(r"^FAILED fmnist-late-linf-\w+: the name 'fmnist-late' belongs to local weights [0-9a-f]{12} "
                     r"\(results ledger\), not to hub repo robbench-test/late", ran.stdout, re.M), ran.stdout
    assert re.search(r"^FAILED fmnist-edited-linf-\w+: fmnist-edited-linf-\w+\.json was edited after `queue add`", ran.stdout, re.M)
    assert planted.read_bytes() == planted_bytes
    assert [p.name for p in planted.parent.glob("*.json")] == ["planted.json"]
    assert len(list((results / "fashion-mnist" / "linf" / "fmnist-linear").glob("*.json"))) == 1
    assert "the name 'fmnist-linear' belongs to hub repo robbench-test/owner (results ledger)" in one_line_error(squatter_recorded)
def test_hub_uris_round_trip_through_huggingface_hubs_parser():
    import warnings

    from huggingface_hub import parse_hf_uri

    from robbench.hub_ref import HubRef, HubRefDeprecation, parse_checkpoint_ref, parse_hub_ref

    commit = "3f1c9e0d5b7a4c2e8f6d1b0a9c8e7d6f5a4b3c2d"
    for ref in (HubRef("org/model", "model.safetensors", commit), HubRef("org/model", "sub/w.safetensors", "v1.0"),
                HubRef("org/model", "", "main"), HubRef("org/board", "results", commit, "dataset")):
        uri = parse_hf_uri(str(ref))
        assert (uri.type, uri.id, uri.revision, uri.path_in_repo) == (ref.repo_type, ref.repo, ref.revision, ref.path)
        assert parse_hub_ref(str(ref), ref.repo_type) == ref
    assert parse_checkpoint_ref(f"hf://org/model@{commit}/model.safetensors") == HubRef("org/model", "model.safetensors", commit)
    with pytest.warns(HubRefDeprecation, match=f"deprecated; write hf://models/org/model@{commit}/model.safetensors$"):
        old = parse_checkpoint_ref(f"hf://org/model/model.safetensors@{commit}")
    assert old == HubRef("org/model", "model.safetensors", commit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for text, fragment in (("hf://org/model/model.safetensors", "add @REVISION"), ("hf://datasets/org/x@main/a.safetensors", "names a dataset repo"),
                               ("hf://org", "namespace/name"), (f"hf://org/model@{commit}/evil.pkl", "fetches only .safetensors")):
            with pytest.raises(RobbenchError, match=fragment):
                parse_checkpoint_ref(text)


@pytest.mark.slow
def test_a_repo_reference_evaluates_and_loads_with_the_repos_model_yaml(hub, published, linear_submission, tmp_path):
    pinned, local = published
    commit = PINNED.match(pinned).group(1)
    repo_ref = f"hf://{REPO}@{commit}"
    load = (
        "import json, sys, torch, robbench; torch.manual_seed(0); x = torch.rand(4, 1, 28, 28); "
        "print(json.dumps([robbench.load_model(s)(x).tolist() for s in sys.argv[1:]]))"
    )
    env = hub_env(hub, tmp_path / "cache")
    [done] = robbench(env, tmp_path, ["evaluate", repo_ref, *FAST, "--results-dir", str(tmp_path / "results")])
    assert done.returncode == 0, done.stderr
    remote = record(tmp_path / "results")
    assert (remote["clean_accuracy"], remote["robust_accuracy"], remote["config"]["checkpoint"]["path"]) == (
        local["clean_accuracy"], local["robust_accuracy"], pinned)
    assert remote["metadata"] == local["metadata"]  # name, dataset, architecture and metadata come from the repo's model.yaml
    loaded = subprocess.run([sys.executable, "-c", load, repo_ref, str(linear_submission)], capture_output=True, text=True, env=env)
    assert loaded.returncode == 0, loaded.stderr
    from_hub, from_disk = json.loads(loaded.stdout)
    assert from_hub == from_disk


@pytest.mark.slow
def test_publish_records_to_a_dataset_repo_and_render_the_boards_from_a_pinned_commit(hub, published, tmp_path):
    _, local = published
    results, site = tmp_path / "results", tmp_path / "local" / "site"
    folder = results / "fashion-mnist" / "linf" / "fmnist-linear"
    folder.mkdir(parents=True)
    (original,) = published_files
    path = folder / original.name
    path.write_bytes(original.read_bytes())
    adversarial = folder / local["adversarial_examples"]["file"]
    adversarial.write_bytes((original.parent / adversarial.name).read_bytes())
    env = hub_env(hub, tmp_path / "cache")
    [rendered_local] = robbench(env, tmp_path, ["leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "local")])
    assert rendered_local.returncode == 0, rendered_local.stderr
    secret = tmp_path / "secret.txt"
    secret.write_text("hf_secret_token\n")
    (site / "leak.html").symlink_to(secret)  # a link is never followed: its target would be uploaded
    (site / "notes.html").write_text("<html>hand-written</html>\n")  # not generated: not uploaded
    generated = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file() and p.name not in ("leak.html", "notes.html"))
    [first] = robbench(env, tmp_path, ["publish", "--repo", "robbench-test/board", "--results-dir", str(results), "--site", str(site)])
    assert first.returncode == 0, first.stderr
    pinned = re.fullmatch(r"robbench leaderboard --from-hub robbench-test/board@([0-9a-f]{40})", first.stdout.strip()).group(1)
    repo = hub.hub.repos["datasets/robbench-test/board"]
    held = f"results/fashion-mnist/linf/fmnist-linear/{path.name}"
    held_adversarial = f"results/fashion-mnist/linf/fmnist-linear/{adversarial.name}"
    assert set(repo.commits[pinned]) == {
        ".gitattributes", held, held_adversarial, "results/ledger.jsonl", *(f"site/{name}" for name in generated)}
    assert repo.commits[pinned][held] == path.read_bytes()
    assert repo.commits[pinned][held_adversarial] == adversarial.read_bytes()  # so what the hub holds can be verified
    assert not any(b"hf_secret_token" in content for content in repo.commits[pinned].values())

    (site / "index.html").unlink()  # published again: the stale page goes, in the same single commit
    second, from_hub, check = robbench(
        env, tmp_path,
        ["publish", "--repo", "robbench-test/board", "--results-dir", str(results), "--site", str(site)],
        ["leaderboard", "--from-hub", f"robbench-test/board@{pinned}", "--out", str(tmp_path / "from-hub")],
        ["leaderboard", "--from-hub", f"hf://datasets/robbench-test/board@{pinned}", "--out", str(tmp_path / "local"), "--check"],
    )
    assert second.returncode == 0 and from_hub.returncode == 0, second.stderr + from_hub.stderr
    assert len(repo.commits) == 3 and "site/index.html" not in repo.commits[repo.refs["main"]]
    rendered = sorted(p.relative_to(tmp_path / "from-hub") for p in (tmp_path / "from-hub").rglob("*") if p.is_file())
    local_files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*")
                         if p.is_file() and not p.is_symlink() and p.name != "notes.html")
    assert rendered and rendered == sorted([*local_files, Path("site/index.html")])  # the page deleted here comes back
    pages = [p for p in local_files if "models" not in p.parts]  # model pages link the records where they were read
    assert pages and all((tmp_path / "from-hub" / p).read_bytes() == (tmp_path / "local" / p).read_bytes() for p in pages)
    record = f"/datasets/robbench-test/board/blob/{pinned}/results/fashion-mnist/linf/fmnist-linear/{path.name}"
    assert f"{record})" in (tmp_path / "from-hub/models/fmnist-linear.md").read_text()
    assert f"](../../results/fashion-mnist/linf/fmnist-linear/{path.name})" in (tmp_path / "local/models/fmnist-linear.md").read_text()
    assert check.returncode == 1 and "site/index.html" in check.stderr and "models/fmnist-linear.md" in check.stderr
    assert "fashion-mnist-linf-0p1.md" not in check.stderr

    # a record of other weights planted in the dataset repo with an early timestamp takes no row
    forged = {**local, "timestamp": "1970-01-01T00:00:00+00:00",
              "config": {**local["config"], "seed": 1, "checkpoint": {**local["config"]["checkpoint"], "sha256": "f" * 64}}}
    planted = hub.hub.commit("datasets/robbench-test/board", {
        "results/fashion-mnist/linf/fmnist-linear/forged.json": json.dumps(forged).encode()})
    [after] = robbench(env, tmp_path, ["leaderboard", "--from-hub", f"robbench-test/board@{planted}", "--out", str(tmp_path / "after")])
    assert after.returncode == 0, after.stderr
    assert "forged.json: the name 'fmnist-linear' belongs to" in after.stderr
    assert (tmp_path / "after" / "fashion-mnist-linf-0p1.md").read_bytes() == (tmp_path / "from-hub" / "fashion-mnist-linf-0p1.md").read_bytes()


def test_publish_refuses_an_invalid_record_and_uploads_nothing(hub, tmp_path):
    bad = tmp_path / "results" / "fashion-mnist" / "linf" / "broken.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{}")
    requests_before = len(hub.hub.requests)
    [done] = robbench(hub_env(hub, tmp_path / "cache"), tmp_path, ["publish", "--repo", "robbench-test/bad", "--results-dir", str(tmp_path / "results")])
    assert "broken.json: invalid record" in one_line_error(done)
    assert len(hub.hub.requests) == requests_before


@pytest.mark.slow
def test_publish_refuses_a_record_whose_adversarial_examples_are_missing(hub, published, tmp_path):
    (original,) = published_files
    folder = tmp_path / "results" / "fashion-mnist" / "linf" / "fmnist-linear"
    folder.mkdir(parents=True)
    (folder / original.name).write_bytes(original.read_bytes())
    requests_before = len(hub.hub.requests)
    [done] = robbench(hub_env(hub, tmp_path / "cache"), tmp_path,
                      ["publish", "--repo", "robbench-test/unverifiable", "--results-dir", str(tmp_path / "results")])
    assert f"{original.name}: its adversarial-example file {original.stem}.adv.npz is missing" in one_line_error(done)
    assert len(hub.hub.requests) == requests_before


@pytest.mark.slow
def test_verify_a_hub_evaluated_record_from_the_commit_it_pins(hub, published, linear_submission, tmp_path):
    """No model.yaml at hand: the record's repo@commit names the weights and the model.yaml beside them."""
    pinned, _ = published
    commit = PINNED.match(pinned).group(1)
    spec = hub_yaml(tmp_path / "from-hub", linear_submission, pinned)
    results = tmp_path / "results"
    [evaluated] = robbench(hub_env(hub, tmp_path / "cache"), tmp_path, ["evaluate", str(spec), *FAST, "--results-dir", str(results)])
    assert evaluated.returncode == 0, evaluated.stderr
    (path,) = results.rglob("*.json")
    elsewhere = tmp_path / "nothing-here"
    elsewhere.mkdir()  # no submissions folder: only the hub can say what the model is
    by_record, by_repo, unpinned = robbench(
        hub_env(hub, tmp_path / "cache"), elsewhere,
        ["verify", str(path), "--device", "cpu"],
        ["verify", str(path), "--model", f"hf://{REPO}@{commit}", "--device", "cpu"],
        ["verify", str(path), "--model", f"hf://{REPO}", "--device", "cpu"],
    )
    assert by_record.returncode == 0 and "0 failed" in by_record.stdout, by_record.stderr
    assert by_repo.returncode == 0 and "0 failed" in by_repo.stdout, by_repo.stderr
    assert f"'hf://{REPO}': add @REVISION" in one_line_error(unpinned)  # both slashes kept


# --------------------------------------------------------------------------------------------
# sizes: what the hub's listing says is too large is never downloaded


def _downloaded(hub: HubServer, repo: str) -> list[str]:
    """The file downloads (HEAD or GET of ``.../resolve/...``) asked of ``repo``."""
    with hub.hub.lock:
        return [path for _, path in hub.hub.requests if f"/{repo}/resolve/" in path]


@pytest.mark.slow
def test_hub_files_over_their_limit_are_refused_before_a_byte_is_downloaded(hub, tmp_path):
    """Each kind against its limit in docs/security.md, judged by the hub's listing: a record of 4 MiB + 1 byte
    (held for real), and weights, a model.yaml and an adversarial-example file that the listing says are larger."""
    from robbench.config import MAX_CONFIG_BYTES
    from robbench.data import get_dataset
    from robbench.loader import MAX_MODEL_BYTES, build_model
    from robbench.store import MAX_ADVERSARIAL_BYTES, MAX_RECORD_BYTES

    from .helpers import write_submission

    untrained = build_model("linear", {}, None, get_dataset("fashion-mnist")).state_dict()  # never downloaded anyway
    linear_submission = write_submission(tmp_path / "linear", "fmnist-linear", "linear", untrained)

    board = "datasets/robbench-test/oversized"
    folder = "results/fashion-mnist/linf/m"
    pinned = hub.hub.commit(board, {f"{folder}/a.json": b"{}", f"{folder}/big.json": b" " * (MAX_RECORD_BYTES + 1),
                                    f"{folder}/a.adv.npz": b"npz"})
    hub.hub.listed_sizes[(board, f"{folder}/a.adv.npz")] = MAX_ADVERSARIAL_BYTES + 1
    seed_repo(hub, "robbench-test/huge-weights", linear_submission.parent)
    hub.hub.listed_sizes[("robbench-test/huge-weights", "model.safetensors")] = MAX_MODEL_BYTES + 1
    seed_repo(hub, "robbench-test/huge-yaml", linear_submission.parent)
    hub.hub.listed_sizes[("robbench-test/huge-yaml", "model.yaml")] = MAX_CONFIG_BYTES + 1
    weights = hub_yaml(tmp_path / "spec", linear_submission, "hf://robbench-test/huge-weights@main/model.safetensors")
    env = hub_env(hub, tmp_path / "cache")
    record, model, spec = robbench(
        env, tmp_path,
        ["leaderboard", "--from-hub", f"robbench-test/oversized@{pinned}", "--out", str(tmp_path / "boards")],
        ["evaluate", str(weights), *FAST, "--results-dir", str(tmp_path / "results")],
        ["evaluate", "hf://robbench-test/huge-yaml@main", *FAST, "--results-dir", str(tmp_path / "results")],
    )
    assert one_line_error(record) == (
        f"robbench: error: hf://datasets/robbench-test/oversized@{pinned}/{folder}/big.json: the hub lists this record "
        "at 4,194,305 bytes, over robbench's limit of 4,194,304 (docs/security.md); nothing was downloaded; its "
        "publisher must remove it and re-publish with `robbench publish`")
    assert ("model.safetensors: the hub lists this weights file at 17,179,869,185 bytes, over robbench's limit of "
            "17,179,869,184 (docs/security.md); nothing was downloaded; robbench evaluates models of at most that many "
            "bytes of weights") in one_line_error(model)
    assert ("model.yaml: the hub lists this model description at 65,537 bytes, over robbench's limit of 65,536"
            in one_line_error(spec))
    fetch_adversarial = ("from robbench.hub import fetch; from robbench.hub_ref import parse_hub_ref; "
                         f"fetch(parse_hub_ref('hf://datasets/robbench-test/oversized@{pinned}/{folder}/a.adv.npz', repo_type='dataset'))")
    done = subprocess.run([sys.executable, "-c", fetch_adversarial], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ("a.adv.npz: the hub lists this adversarial-example file at 536,870,913 bytes, over robbench's limit of "
            "536,870,912") in done.stderr
    assert _downloaded(hub, board) == []  # not even the small record beside the large one
    assert _downloaded(hub, "robbench-test/huge-weights") == []
    assert _downloaded(hub, "robbench-test/huge-yaml") == []
    assert not (tmp_path / "boards").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_robbench_offline_keeps_hub_downloads_off_and_a_download_is_announced_first(hub, published, linear_submission, tmp_path):
    """ROBBENCH_OFFLINE=1 alone (huggingface_hub itself online) is the switch dataset downloads follow: weights and
    records come from the local cache only, or a one-line error names the file and the ways to provide it."""
    pinned, local = published
    spec = hub_yaml(tmp_path / "spec", linear_submission, pinned)
    cache = tmp_path / "cache"
    offline = {**hub_env(hub, cache), "ROBBENCH_OFFLINE": "1"}
    requests_before = len(hub.hub.requests)
    missing, board = robbench(
        offline, tmp_path, ["evaluate", str(spec), *FAST],
        ["leaderboard", "--from-hub", "robbench-test/board@main", "--out", str(tmp_path / "boards")],
    )
    assert one_line_error(missing) == (
        f"robbench: error: {pinned}: not in the local hub cache ({cache}) and downloads are off (ROBBENCH_OFFLINE or "
        "HF_HUB_OFFLINE is set); fetch it once online (unset it), point HF_HUB_CACHE at a cache that holds it, or name a "
        "local checkpoint file in model.yaml")
    assert "hf://datasets/robbench-test/board@main" in one_line_error(board) and "downloads are off" in one_line_error(board)
    assert len(hub.hub.requests) == requests_before  # not one request
    first, again = robbench(hub_env(hub, cache), tmp_path, ["evaluate", str(spec), *FAST], ["evaluate", str(spec), *FAST])
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    announced = f"robbench: {pinned} is not on this machine; downloading it from {hub.url} into {cache} (set ROBBENCH_OFFLINE=1 to never download)"
    assert announced in first.stderr.splitlines() and "downloading" not in again.stderr  # cached the second time
    requests_before = len(hub.hub.requests)
    [cached] = robbench(offline, tmp_path, ["evaluate", str(spec), *FAST, "--results-dir", str(tmp_path / "results")])
    assert cached.returncode == 0, cached.stderr
    assert len(hub.hub.requests) == requests_before and record(tmp_path / "results")["robust_accuracy"] == local["robust_accuracy"]


@pytest.mark.slow
def test_the_hub_copy_of_locally_evaluated_weights_is_the_same_owner(hub, published, linear_submission, tmp_path):
    """Evaluated locally, then from its hub copy (the same SHA-256) into the same results folder: one owner, one row."""
    pinned, local = published
    results = tmp_path / "results"
    spec = hub_yaml(tmp_path / "from-hub", linear_submission, pinned)
    local_run, hub_run, board = robbench(
        hub_env(hub, tmp_path / "cache"), tmp_path,
        ["evaluate", str(linear_submission), *FAST, "--results-dir", str(results)],
        ["evaluate", str(spec), *FAST, "--results-dir", str(results)],
        ["leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "boards")],
    )
    assert local_run.returncode == 0 and hub_run.returncode == 0 and board.returncode == 0, local_run.stderr + hub_run.stderr + board.stderr
    runs = [json.loads(p.read_text()) for p in sorted((results / "fashion-mnist" / "linf" / "fmnist-linear").glob("*.json"))]
    assert sorted(run["config"]["checkpoint"]["path"] for run in runs) == sorted([pinned, "model.safetensors"])
    assert {run["config"]["checkpoint"]["sha256"] for run in runs} == {local["config"]["checkpoint"]["sha256"]}
    ledger = [json.loads(line) for line in (results / "ledger.jsonl").read_text().splitlines()]
    assert [(claim["name"], claim["repo"]) for claim in ledger] == [("fmnist-linear", None), ("fmnist-linear", REPO)]
    assert "belongs to" not in board.stderr
    rows = [line for line in (tmp_path / "boards" / "fashion-mnist-linf-0p1.md").read_text().splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 2 and all("[fmnist-linear]" in row for row in rows)  # one row (main table and details): both runs in it
    assert "| pgd {0:.2f}; pgd {0:.2f} |".format(100 * local["robust_accuracy"]) in rows[1]


@pytest.mark.slow
def test_a_folder_downloads_concurrently_and_one_tampered_file_fails_the_fetch(hub, tmp_path):
    """fetch_folder's threads bring every listed file, each checked; a file served with other bytes is refused."""
    files = {f"results/board/run-{index:02d}.json": json.dumps({"run": index}).encode() for index in range(40)}
    pinned = hub.hub.commit("datasets/robbench-test/many", files)
    fetch = ("import json, sys; from robbench.hub import fetch_folder; from robbench.hub_ref import parse_hub_ref\n"
             "root = fetch_folder(parse_hub_ref(sys.argv[1], repo_type='dataset'), '.json')\n"
             "print(json.dumps(sorted(str(p.relative_to(root)) for p in root.rglob('*.json'))))")
    ref = f"hf://datasets/robbench-test/many@{pinned}/results"
    whole = subprocess.run([sys.executable, "-c", fetch, ref], capture_output=True, text=True, cwd=tmp_path,
                           env=hub_env(hub, tmp_path / "cache"), timeout=120)
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout) == sorted(files)
    hub.hub.tampered.add(("datasets/robbench-test/many", "results/board/run-17.json"))
    refused = subprocess.run([sys.executable, "-c", fetch, ref], capture_output=True, text=True, cwd=tmp_path,
                             env=hub_env(hub, tmp_path / "fresh-cache"), timeout=120)
    assert refused.returncode != 0 and "results/board/run-17.json: received bytes hash to" in refused.stderr
    assert "refusing the download" in refused.stderr
