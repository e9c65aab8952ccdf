"""``robbench verify``: an honest record is confirmed; every kind of tampering is caught."""

from __future__ import annotations

import json
import re
from pathlib import Path

import math

import numpy as np
import pytest
import torch
import yaml

from robbench.adversarial import decode, digest, encode
from robbench.cli import main
from robbench.evidence import Evidence
from robbench.store import adversarial_path, read_record, record_json
from robbench.verify import verify_record

ARGS = ["--threat-model", "linf", "--eps", "0.05", "--attacks", "pgd", "--n-examples", "60", "--device", "cpu"]


@pytest.fixture(scope="module")
def evaluated(linear_submission, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    assert main(["evaluate", str(linear_submission), *ARGS, "--results-dir", str(results)]) == 0
    (path,) = results.rglob("*.json")
    return path


@pytest.fixture
def record_file(evaluated: Path, tmp_path: Path) -> Path:
    """A private copy of the evaluated record and its adversarial-example file, to tamper with."""
    copy = tmp_path / evaluated.name
    copy.write_bytes(evaluated.read_bytes())
    adversarial_path(copy).write_bytes(adversarial_path(evaluated).read_bytes())
    return copy


def _verify(record_file: Path, linear_submission: Path, capsys) -> tuple[int, str]:
    code = main(["verify", str(record_file), "--model", str(linear_submission), "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _rewrite(record_file: Path, change) -> None:
    """Change the saved examples and re-pin their digest in the record: a consistent forgery."""
    index, x_adv = decode(adversarial_path(record_file), (1, 28, 28))
    index, x_adv = change(index, x_adv)
    data = encode(index, x_adv)
    adversarial_path(record_file).write_bytes(data)
    record = read_record(record_file)
    pinned = record.adversarial_examples.model_copy(update={"sha256": digest(data), "count": len(index)})
    record_file.write_text(record_json(record.model_copy(update={"adversarial_examples": pinned})))


def _restate(record_file: Path, change) -> str:
    """Change the evidence's status with ``change(status) -> status`` and re-derive every total from it: a record
    that ``read_record`` accepts and only the model can refute. Returns the new status."""
    record = read_record(record_file)
    evidence = Evidence(stages=record.evidence.stages, status=change(record.evidence.status))
    record_file.write_text(record_json(record.model_copy(update={
        "evidence": evidence, "clean_accuracy": evidence.clean_accuracy(), "robust_accuracy": evidence.robust_accuracy(),
        "attacks": evidence.attack_results(),
    })))
    return evidence.status


def _replace(status: str, position: int, code: str) -> str:
    return status[:position] + code + status[position + 1:]


def _clean_images(n: int) -> np.ndarray:
    from robbench.data import get_dataset

    return get_dataset("fashion-mnist").load("test", n)[0].numpy()


def test_honest_record_is_confirmed(record_file, linear_submission, capsys):
    record = read_record(record_file)
    broken = record.evidence.status.count("0")
    assert broken > 5  # the check below means something
    code, output = _verify(record_file, linear_submission, capsys)
    assert code == 0, output
    assert f"60 examples: {broken} breaks confirmed, 0 failed" in output


def test_example_moved_outside_the_ball_fails(record_file, linear_submission, capsys):
    def push(index, x_adv):
        x_adv = x_adv.copy()
        x = _clean_images(60)[index[0]]
        x_adv[0] = np.clip(x + 0.2 * np.sign(x_adv[0] - x + 1e-9), 0, 1).astype(np.float32)
        return index, x_adv

    _rewrite(record_file, push)
    code, output = _verify(record_file, linear_submission, capsys)
    first = int(decode(adversarial_path(record_file), (1, 28, 28))[0][0])
    assert code == 1 and f"1 failed; first: test index {first}: the saved example lies outside the Linf ball" in output


def test_example_out_of_range_fails(record_file, linear_submission, capsys):
    def overflow(index, x_adv):
        x_adv = x_adv.copy()
        x_adv[0, 0, 0, 0] = -0.03  # 0.03 from its clean value: inside the ball (eps 0.05), below the range [0, 1]
        return index, x_adv

    clean = _clean_images(60)
    index, _ = decode(adversarial_path(record_file), (1, 28, 28))
    assert clean[index[0], 0, 0, 0] == 0.0  # the corner pixel is background: only the value range refuses -0.03
    _rewrite(record_file, overflow)
    code, output = _verify(record_file, linear_submission, capsys)
    assert code == 1 and (f"1 failed; first: test index {index[0]}: the saved example lies outside the Linf ball of "
                          "radius 0.05 or the value range") in output


def test_a_replay_writes_into_the_results_folder_the_record_lies_in(tmp_path):
    """``<folder>/<dataset>/<threat>/<name>/run.json`` lies in ``<folder>``; a file anywhere else lies in none."""
    from robbench.verify import results_folder_of

    from .helpers import make_record

    record = make_record("m", status="+0-", stop=3)  # fashion-mnist, L-inf 0.1 (its slug: linf)
    assert results_folder_of(tmp_path / "results/fashion-mnist/linf/m/run.json", record) == tmp_path / "results"
    for elsewhere in ("m/run.json", "results/fashion-mnist/l2/m/run.json", "results/mnist/linf/m/run.json",
                      "results/fashion-mnist/linf/other/run.json", "run.json"):
        assert results_folder_of(tmp_path / elsewhere, record) is None, elsewhere


def test_clean_image_in_place_of_the_example_fails(record_file, linear_submission, capsys):
    def clean_instead(index, x_adv):
        x_adv = x_adv.copy()
        x_adv[1] = _clean_images(60)[index[1]]
        return index, x_adv

    _rewrite(record_file, clean_instead)
    index, _ = decode(adversarial_path(record_file), (1, 28, 28))
    code, output = _verify(record_file, linear_submission, capsys)
    assert code == 1 and f"first: test index {index[1]}: the model classifies the saved example correctly" in output


def test_missing_example_fails(record_file, linear_submission, capsys):
    index, _ = decode(adversarial_path(record_file), (1, 28, 28))
    _rewrite(record_file, lambda index, x_adv: (index[1:], x_adv[1:]))
    code, output = _verify(record_file, linear_submission, capsys)
    assert code == 1 and f"test index {index[0]}: the record counts it broken but saved no adversarial example" in output


def test_break_claimed_without_an_example_fails(record_file, linear_submission, capsys):
    data = json.loads(record_file.read_text())
    status = data["evidence"]["status"]
    survivor = status.index("+")
    data["evidence"]["status"] = status[:survivor] + "0" + status[survivor + 1:]
    data["robust_accuracy"] = data["evidence"]["status"].count("+") / 60
    stage = data["attacks"][0]["stages"][0]
    stage["n_broken"] += 1
    stage["accuracy"] = data["attacks"][0]["accuracy"] = data["robust_accuracy"]
    record_file.write_text(json.dumps(data))
    code, output = _verify(record_file, linear_submission, capsys)
    assert code == 1 and f"test index {survivor}: the record counts it broken but saved no adversarial example" in output


def test_file_not_the_one_the_record_names_fails(record_file, linear_submission, capsys):
    path = adversarial_path(record_file)
    index, x_adv = decode(path, (1, 28, 28))
    path.write_bytes(encode(index[::-1].copy(), x_adv[::-1].copy()) + b"\0")  # same content, other bytes
    code, output = _verify(record_file, linear_submission, capsys)
    assert code == 1 and "is not the file the record names (SHA-256 differs)" in output


def test_unreadable_example_file_is_a_one_line_error(record_file, linear_submission, capsys):
    """A folder where the file should be (as unreadable as a file without permission, which root ignores)."""
    path = adversarial_path(record_file)
    path.unlink()
    path.mkdir()
    code, output = _verify(record_file, linear_submission, capsys)
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1, output
    assert lines[0] == f"robbench: error: {path}: the adversarial-example file is not a regular file (a FIFO, device or folder); remove it"


def test_model_yaml_is_found_by_the_records_name_and_dataset(record_file, linear_submission, tmp_path, capsys):
    submissions = tmp_path / "submissions"
    folder = submissions / "fashion-mnist" / "linear"
    folder.mkdir(parents=True)
    for name in ("model.yaml", "model.safetensors"):
        (folder / name).write_bytes((linear_submission.parent / name).read_bytes())
    found = main(["verify", str(record_file), "--submissions-dir", str(submissions), "--device", "cpu"])
    assert found == 0, capsys.readouterr().err
    capsys.readouterr()
    missing = main(["verify", str(record_file), "--submissions-dir", str(submissions / "fashion-mnist"), "--device", "cpu"])
    assert missing == 2
    assert capsys.readouterr().err.strip() == (
        f"robbench: error: no submission named 'fmnist-linear' on fashion-mnist in {submissions / 'fashion-mnist'}; "
        "pass --model path/to/model.yaml (or hf://ORG/REPO@REVISION); known: none"
    )


def test_other_weights_are_refused(record_file, tmp_path, capsys):
    from robbench.adversarial import file_sha256

    from .helpers import fit_linear_fashion_mnist, write_submission

    other = write_submission(tmp_path / "other", "fmnist-linear", "linear", fit_linear_fashion_mnist(seed=1).state_dict())
    weights = other.parent / "model.safetensors"
    code = main(["verify", str(record_file), "--model", str(other), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 2 and not captured.out
    assert captured.err.strip() == (
        f"robbench: error: {weights}: SHA-256 is {file_sha256(weights)}, model.yaml pins "
        f"{read_record(record_file).checkpoint.sha256}; the file was changed"
    )


def test_a_model_yaml_pinning_other_weights_is_refused(record_file, linear_submission, tmp_path, capsys):
    spec = {**yaml.safe_load(linear_submission.read_text()), "sha256": "0" * 64,
            "checkpoint": str(linear_submission.parent / "model.safetensors")}
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(yaml.safe_dump(spec))
    assert main(["verify", str(record_file), "--model", str(pinned), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"robbench: error: the model.yaml pins sha256 {'0' * 64}, the record was made with "
        f"{read_record(record_file).checkpoint.sha256}"
    )


def test_other_test_data_fails_before_any_example_is_checked(record_file, linear_submission):
    record = read_record(record_file)
    config = record.config.model_copy(update={"data_sha256": "f" * 64})
    record_file.write_text(record_json(record.model_copy(update={"config": config})))
    verdict = verify_record(record_file, linear_submission, device="cpu")
    failures = [str(f) for f in verdict.failures]
    assert "test examples 0..60 differ from the evaluated ones (data SHA-256)" in failures
    # the digest is part of the run's identity, so the file no longer carries its run id either; no example is checked
    assert all(f.startswith(("file name:", "adversarial_examples.file:", "test examples")) for f in failures)
    assert verdict.confirmed == 0 and not verdict.ok


@pytest.mark.parametrize("claimed, truth, said", [("+", "-", "correctly"), ("-", "+", "wrongly")])
def test_a_clean_pass_the_model_does_not_give_fails(record_file, linear_submission, claimed, truth, said):
    """Claiming a misclassified example survived (or a survivor misclassified) is refuted by the model alone."""
    position = read_record(record_file).evidence.status.index(truth)
    _restate(record_file, lambda status: _replace(status, position, claimed))
    verdict = verify_record(record_file, linear_submission, device="cpu")
    assert [str(f) for f in verdict.failures] == [
        f"test index {position}: the record says it is {said} classified clean; it is not"
    ]


def test_an_example_saved_but_not_counted_broken_fails(record_file, linear_submission):
    record = read_record(record_file)
    position = record.evidence.status.index("0")
    status = _restate(record_file, lambda status: _replace(status, position, "+"))
    verdict = verify_record(record_file, linear_submission, device="cpu")
    assert [str(f) for f in verdict.failures] == [
        f"test index {position}: an adversarial example is saved but the record does not count it broken"
    ]
    assert verdict.confirmed == status.count("0")  # the others are still confirmed


def test_by_default_verification_runs_where_the_evaluation_would(record_file, linear_submission):
    """``device="auto"``, the default, is a device robbench resolves; the honest record is confirmed on it."""
    verdict = verify_record(record_file, linear_submission)
    broken = read_record(record_file).evidence.status.count("0")
    assert verdict.ok and verdict.summary().startswith(f"60 examples: {broken} breaks confirmed, 0 failed")
    for note in verdict.notes:  # a borderline survivor the flag check's PGD broke (here: one, on torch 2.13 CPU)
        said = re.fullmatch(r"(\d+) example\(s\) the record counts robust broke under the flag check's PGD at ε "
                            r"\(test indices (\d+(?:, \d+)*)\); --replay records such breaks", note)
        assert said and int(said[1]) == len(said[2].split(", ")), note


def test_the_summary_says_what_was_confirmed_replayed_written_and_noted():
    from robbench.consistency import Failure
    from robbench.verify import Verdict

    assert Verdict(1234).summary() == "1,234 examples: 0 breaks confirmed, 0 failed"
    verdict = Verdict(1000, confirmed=1500, replayed=2000, replay_seed=7, written=Path("new/run.json"),
                      notes=["one", "two"])
    verdict.fail("whole file")
    verdict.fail("an example", 3)
    assert verdict.failures == [Failure(None, "whole file"), Failure(3, "an example")] and not verdict.ok
    assert verdict.summary() == (
        "1,000 examples: 1,500 breaks confirmed, 2,000 replayed (--replay-seed 7), 2 failed; first: whole file; "
        "the breaks found are a new run: new/run.json; note: one; note: two"
    )
    assert Verdict(10, confirmed=4, replayed=1200).summary() == "10 examples: 4 breaks confirmed, 1,200 re-run as recorded, 0 failed"
    assert Verdict(10, replayed=3, replay_seed=0).summary() == "10 examples: 0 breaks confirmed, 3 replayed (--replay-seed 0), 0 failed"
    # a randomized record's breaks no redraw got wrong, counted; the record's thread count, singular or plural
    assert Verdict(1200, confirmed=29, not_reverified=[3, 5]).summary() == (
        "1,200 examples: 29 breaks confirmed, 2 not re-verified, 0 failed")
    assert [Verdict(10, threads=(used, 4)).summary() for used in (1, 2)] == [
        "10 examples (on the record's 1 CPU thread, not this process's 4): 0 breaks confirmed, 0 failed",
        "10 examples (on the record's 2 CPU threads, not this process's 4): 0 breaks confirmed, 0 failed"]


def test_the_data_folder_given_is_the_one_read(record_file, linear_submission, tmp_path):
    """``data_dir`` comes first: a corrupt test split there is refused (its digest), not passed over."""
    from robbench.data.idx import FASHION_MNIST
    from robbench.errors import RobbenchError

    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for name in FASHION_MNIST.files["test"].values():
        (folder / name).write_bytes(b"not the test split")
    with pytest.raises(RobbenchError, match=r"fashion-mnist/t10k-.* is corrupt or truncated \(SHA256 differs"):
        verify_record(record_file, linear_submission, device="cpu", data_dir=str(tmp_path / "data"))


def test_a_record_without_saved_examples_cannot_be_verified(record_file, linear_submission):
    from robbench.errors import RobbenchError

    record = read_record(record_file)
    record_file.write_text(record_json(record.model_copy(update={"adversarial_examples": None})))
    with pytest.raises(RobbenchError) as refused:
        verify_record(record_file, linear_submission, device="cpu")
    assert str(refused.value) == (f"{record_file}: the record has no saved adversarial examples; re-run `robbench "
                                  "evaluate` with --results-dir to get a verifiable record")


def test_a_record_of_other_dataset_parameters_is_refused(record_file, linear_submission):
    from robbench.errors import RobbenchError

    record = read_record(record_file)
    config = record.config.model_copy(update={"dataset_params": {"variant": "other"}})
    record_file.write_text(record_json(record.model_copy(update={"config": config})))
    with pytest.raises(RobbenchError) as refused:
        verify_record(record_file, linear_submission, device="cpu")
    assert str(refused.value) == ("the dataset parameters differ from the record's ({'variant': 'other'}); pass the "
                                  "model.yaml the record was made from")


def test_a_file_holding_other_than_the_count_the_record_names_is_refused(record_file, linear_submission):
    """The digest matches (the file is untouched) but the record claims one example more: decoding refuses it."""
    from robbench.errors import RobbenchError

    record = read_record(record_file)
    count = record.adversarial_examples.count
    pinned = record.adversarial_examples.model_copy(update={"count": count + 1})
    record_file.write_text(record_json(record.model_copy(update={"adversarial_examples": pinned})))
    with pytest.raises(RobbenchError) as refused:
        verify_record(record_file, linear_submission, device="cpu")
    assert str(refused.value) == f"{adversarial_path(record_file)}: index has shape ({count},), expected ({count + 1},)"


def test_an_example_saved_twice_fails(record_file, linear_submission):
    _rewrite(record_file, lambda index, x_adv: (np.concatenate([index[:1], index]), np.concatenate([x_adv[:1], x_adv])))
    verdict = verify_record(record_file, linear_submission, device="cpu")
    assert [str(f) for f in verdict.failures] == ["the file saves an example twice"]


#: a pixel value no attack step lands on exactly and no test image holds (not a multiple of 1/255)
MARKER = 0.0123


class NanAtMarker(torch.nn.Sequential):
    """The ``linear`` layout (so its checkpoint loads) with NaN logits where the first pixel is exactly ``MARKER``."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(torch.nn.Flatten(), torch.nn.Linear(math.prod(input_shape), num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        marked = x.flatten(1)[:, 0] == MARKER
        return super().forward(x).masked_fill(marked[:, None], float("nan"))


@pytest.fixture(scope="module")
def nan_at_marker(linear_submission, tmp_path_factory) -> tuple[Path, Path]:
    """(model.yaml, record) of an honest evaluation of ``NanAtMarker`` with the linear weights."""
    from robbench.models import ARCHITECTURES

    ARCHITECTURES.register("nan-at-marker")(NanAtMarker)
    folder = tmp_path_factory.mktemp("nan-at-marker")
    spec = {**yaml.safe_load(linear_submission.read_text()), "architecture": "nan-at-marker",
            "checkpoint": str(linear_submission.parent / "model.safetensors")}
    model_yaml = folder / "model.yaml"
    model_yaml.write_text(yaml.safe_dump(spec))
    try:
        assert main(["evaluate", str(model_yaml), *ARGS, "--results-dir", str(folder / "results")]) == 0
        (record,) = (folder / "results").rglob("*.json")
        yield model_yaml, record
    finally:
        ARCHITECTURES._entries.pop("nan-at-marker")


def test_non_finite_logits_at_a_saved_example_fail(nan_at_marker):
    """A saved example inside the ball where the model gives NaN is no break (argmax of NaN logits is class 0)."""
    model_yaml, record_file = nan_at_marker
    index, _ = decode(adversarial_path(record_file), (1, 28, 28))
    assert _clean_images(60)[index[0], 0, 0, 0] == 0.0  # so MARKER is inside the 0.05-ball of this pixel

    def mark(index, x_adv):
        x_adv = x_adv.copy()
        x_adv[0, 0, 0, 0] = MARKER
        return index, x_adv

    assert verify_record(record_file, model_yaml, device="cpu").ok
    _rewrite(record_file, mark)
    verdict = verify_record(record_file, model_yaml, device="cpu")
    assert [str(f) for f in verdict.failures] == [
        f"test index {index[0]}: the model's logits on the saved example are not finite"
    ]


def test_failures_sort_by_their_index_not_their_text(record_file, linear_submission):
    """Found in the order: claimed without an example (last index), classified correctly (first), saved twice
    (whole file); reported by index, whole-file failures first."""
    index, _ = decode(adversarial_path(record_file), (1, 28, 28))
    clean = _clean_images(60)

    def tamper(index, x_adv):
        x_adv = x_adv[:-1].copy()
        x_adv[0] = clean[index[0]]
        return np.concatenate([index[:1], index[:-1]]), np.concatenate([x_adv[:1], x_adv])

    _rewrite(record_file, tamper)
    verdict = verify_record(record_file, linear_submission, device="cpu")
    assert [str(f) for f in verdict.failures] == [
        "the file saves an example twice",
        f"test index {index[0]}: the model classifies the saved example correctly",
        f"test index {index[0]}: the model classifies the saved example correctly",
        f"test index {index[-1]}: the record counts it broken but saved no adversarial example",
    ]
    assert verdict.summary().startswith(  # a note may follow (a borderline survivor the flag check's PGD broke)
        f"60 examples: {len(index) - 2} breaks confirmed, 4 failed; first: the file saves an example twice"
    )


@pytest.mark.slow  # a fresh interpreter importing torch: seconds
def test_verify_does_not_import_the_evaluation_pipeline():
    """The digest lives with the other digests: verifying a record must not load the evaluation pipeline."""
    import subprocess
    import sys

    from .helpers import REPO

    code = subprocess.run(
        [sys.executable, "-c", "import sys, robbench.verify; print('robbench.pipeline' in sys.modules)"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert code.stdout.strip() == "False", code.stderr


# --------------------------------------------------------------------------------------------
# records whose claims are untrue, each made consistent (totals, digests, run id) as a forger would


def _forge(record_file: Path, edit, adversarial=None) -> Path:
    """``edit`` the record's JSON, recompute its totals from the evidence, and write it under the run id of
    its new configuration with its adversarial-example file (``adversarial``: new ``(index, x_adv)``)."""
    from robbench.evidence import Evidence
    from robbench.results import EvalRecord

    data = json.loads(record_file.read_text())
    edit(data)
    evidence = Evidence.model_validate(data["evidence"])
    data.update(clean_accuracy=evidence.clean_accuracy(), robust_accuracy=evidence.robust_accuracy(),
                attacks=[a.model_dump() for a in evidence.attack_results()])
    payload = adversarial_path(record_file).read_bytes() if adversarial is None else encode(*adversarial)
    run_id = EvalRecord.model_validate(data).config.run_id
    data["adversarial_examples"].update(file=f"{run_id}.adv.npz", sha256=digest(payload), count=len(decode_bytes(payload)))
    forged = record_file.with_name(f"{run_id}.json")
    forged.write_text(record_json(EvalRecord.model_validate(data)))
    adversarial_path(forged).write_bytes(payload)
    return forged


def decode_bytes(payload: bytes) -> np.ndarray:
    import io

    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return archive["index"]


def _failed(forged: Path, linear_submission: Path, capsys, *extra: str) -> str:
    code = main(["verify", str(forged), "--model", str(linear_submission), "--device", "cpu", *extra])
    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err
    return captured.err


def test_broken_examples_rewritten_as_survivors_fail(record_file, linear_submission, capsys):
    """The issue's first forgery: every break turned into a survivor, the saved examples dropped."""

    def all_robust(data):
        data["evidence"]["status"] = "".join("+" if c == "0" else c for c in data["evidence"]["status"])

    empty = (np.zeros(0, dtype=np.int64), np.zeros((0, 1, 28, 28), dtype=np.float32))
    forged = _forge(record_file, all_robust, empty)
    assert read_record(forged).robust_accuracy == read_record(record_file).clean_accuracy  # claims every correct one robust
    output = _failed(forged, linear_submission, capsys)
    assert "the record counts it robust; the flag check's PGD-20 at ε (re-run with the recorded seed) breaks it" in output


def test_a_run_relabelled_as_the_standard_threat_model_fails(record_file, linear_submission, capsys):
    def standard(data):
        data["config"]["threat_model"]["standard"] = True

    output = _failed(_forge(record_file, standard), linear_submission, capsys)
    assert ("config.threat_model.standard: ε = 0.05 is not the standard linf radius of fashion-mnist (0.1); "
            "the record says standard: true") in output

    def standard_radius(data):
        data["config"]["threat_model"].update(eps=0.1, standard=True)

    output = _failed(_forge(record_file, standard_radius), linear_submission, capsys)
    assert "config.attacks[0].config: step_size differ from what the registered 'pgd' records" in output


def test_a_subset_claiming_to_be_the_whole_test_set_fails(record_file, linear_submission, capsys):
    def whole(data):
        data["config"]["examples"]["test_size"] = 60

    forged = _forge(record_file, whole)
    assert read_record(forged).examples.is_full  # the board would drop its subset mark
    output = _failed(forged, linear_submission, capsys)
    assert "config.examples.test_size: the fashion-mnist test set has 10,000 examples, the record says 60" in output


def test_deleted_added_or_altered_flags_fail(record_file, linear_submission, capsys):
    """Flags are not part of the run's configuration: each forgery keeps the file name, so each starts from the original."""
    assert [f.code for f in read_record(record_file).flags] == ["non-standard-attacks"]
    original = record_file.read_text()

    output = _failed(_forge(record_file, lambda data: data.update(flags=[])), linear_submission, capsys)
    assert "flags: non-standard-attacks is missing; the recomputed checks raise it (attacks pgd;" in output

    def added(data):
        data["flags"].append({"code": "masked-gradients", "message": "forged"})

    record_file.write_text(original)
    output = _failed(_forge(record_file, added), linear_submission, capsys)
    assert "flags: masked-gradients is raised by no recomputed check" in output
    record_file.write_text(original)

    def altered(data):
        data["flags"][0]["message"] = "attacks pgd, autoattack"

    output = _failed(_forge(record_file, altered), linear_submission, capsys)
    assert "flags: non-standard-attacks says 'attacks pgd, autoattack'; recomputed: \"attacks pgd; the board's standard" in output


def test_a_pgd_run_relabelled_as_autoattack_fails(record_file, linear_submission, capsys):
    def autoattack(data):
        data["config"]["attacks"] = [{"name": "autoattack", "config": {
            "version": "standard", "components": ["apgd-ce", "apgd-t", "fab-t", "square"], "skipped_components": {},
            "seed": 0, "n_target_classes": 9, "implementation": "pyautoattack"}}]
        data["evidence"]["stages"] = ["autoattack/apgd-ce"]
        data["flags"] = []

    output = _failed(_forge(record_file, autoattack), linear_submission, capsys)
    assert ("evidence.stages: the recorded attacks run autoattack/apgd-ce, autoattack/apgd-t, autoattack/fab-t, "
            "autoattack/square; the record lists autoattack/apgd-ce") in output


def test_a_record_under_another_file_name_fails(record_file, linear_submission, capsys):
    renamed = record_file.with_name("pgd-seed0-0-60-0000000000.json")
    record_file.rename(renamed)
    adversarial_path(record_file).rename(adversarial_path(renamed))
    output = _failed(renamed, linear_submission, capsys)
    assert f"file name: the configuration's run id is {record_file.stem}, the file is {renamed.name}" in output


# --------------------------------------------------------------------------------------------
# replay


def test_replay_all_reproduces_an_honest_record_example_by_example(record_file, linear_submission, capsys):
    code, output = _verify_with(record_file, linear_submission, capsys, "--replay", "all")
    assert code == 0, output
    assert "60 examples: 32 breaks confirmed, 60 re-run as recorded, 0 failed" in output


def test_replayed_survivors_that_break_fail_and_become_a_new_run(record_file, linear_submission, tmp_path, capsys):
    """Two breaks hidden as survivors (few enough to pass the consistency level) are found again by a replay
    of every survivor, and the board's best-known accuracy counts them."""
    from robbench.leaderboard.entries import combine

    forged, hidden = _hide_two_breaks(record_file)
    survivors = read_record(forged).evidence.status.count("+")
    store = tmp_path / "store"
    code, output = _verify_with(forged, linear_submission, capsys, "--replay", "100", "--replay-seed", "7",
                                "--results-dir", str(store))
    assert code == 1, output
    for i in hidden:
        assert f"failed: test index {i}: the record counts it robust; the replay (seed 7) breaks it with pgd/pgd" in output
    assert f"{survivors} replayed (--replay-seed 7)" in output
    (run_file,) = store.rglob("*.json")
    run = read_record(run_file)
    assert run.config.run_id != read_record(forged).config.run_id and "--replay (seed 7)" in run.notes[0]
    assert run.robust_accuracy <= read_record(record_file).robust_accuracy  # the hidden breaks are back
    assert combine([read_record(forged), run]).robust_accuracy == run.robust_accuracy
    code, output = _verify_with(run_file, linear_submission, capsys)
    assert code == 0, output  # the new run is itself a verifiable record


def _hide_two_breaks(record_file: Path) -> tuple[Path, np.ndarray]:
    """A consistent forgery: two broken examples restated as survivors, their saved examples dropped."""
    index, x_adv = decode(adversarial_path(record_file), (1, 28, 28))
    hidden = index[:2]

    def hide(data):
        status = list(data["evidence"]["status"])
        for i in hidden:
            status[i] = "+"
        data["evidence"]["status"] = "".join(status)

    return _forge(record_file, hide, (index[2:], x_adv[2:])), hidden


def test_breaks_a_replay_finds_need_somewhere_to_be_written(record_file, linear_submission, capsys):
    """A record outside any results folder, replayed without --results-dir: the breaks fail it, and the verdict
    says they were not recorded (nothing is written beside it)."""
    forged, hidden = _hide_two_breaks(record_file)
    before = sorted(record_file.parent.rglob("*"))
    code, output = _verify_with(forged, linear_submission, capsys, "--replay", "100", "--replay-seed", "7")
    assert code == 1, output
    assert ("failed: the breaks the replay found are not recorded: pass --results-dir to write them as a new run"
            in output)
    assert f"failed: test index {hidden[0]}: the record counts it robust; the replay (seed 7) breaks it" in output
    assert "the breaks found are a new run" not in output and sorted(record_file.parent.rglob("*")) == before


def test_breaks_a_replay_finds_go_into_the_results_folder_the_record_lies_in(record_file, linear_submission, tmp_path,
                                                                          capsys):
    """Without --results-dir, the new run goes into ``<folder>/<dataset>/<threat>/<name>/`` beside the record."""
    from robbench.store import run_folder

    forged, _ = _hide_two_breaks(record_file)
    record = read_record(forged)
    folder = tmp_path / "results" / run_folder(record.dataset, record.threat_model, record.name)
    folder.mkdir(parents=True)
    placed = folder / forged.name
    forged.rename(placed)
    adversarial_path(forged).rename(adversarial_path(placed))
    code, output = _verify_with(placed, linear_submission, capsys, "--replay", "100", "--replay-seed", "7")
    assert code == 1, output
    (run_file,) = set(folder.glob("*.json")) - {placed}
    assert f"the breaks found are a new run: {run_file}" in output
    assert "are not recorded" not in output


def test_a_record_that_fails_its_consistency_checks_is_not_replayed(record_file, linear_submission, capsys):
    def push(index, x_adv):  # the first saved example moved outside the ball: a consistency failure
        x_adv = x_adv.copy()
        x = _clean_images(60)[index[0]]
        x_adv[0] = np.clip(x + 0.2 * np.sign(x_adv[0] - x + 1e-9), 0, 1).astype(np.float32)
        return index, x_adv

    _rewrite(record_file, push)
    code, output = _verify_with(record_file, linear_submission, capsys, "--replay", "3", "--replay-seed", "11")
    assert code == 1, output
    assert "60 examples: 31 breaks confirmed, 2 failed; first: replay skipped: the consistency checks failed" in output
    assert "replayed" not in output


def test_the_replay_seed_chooses_the_examples_and_is_printed(record_file, linear_submission, capsys):
    first = _verify_with(record_file, linear_submission, capsys, "--replay", "3", "--replay-seed", "11")
    again = _verify_with(record_file, linear_submission, capsys, "--replay", "3", "--replay-seed", "11")
    assert first[0] == again[0] == 0 and "3 replayed (--replay-seed 11)" in first[1]
    fresh = _verify_with(record_file, linear_submission, capsys, "--replay", "3")
    assert re.search(r"replay seed (\d+) \(repeat with --replay-seed \1\)", fresh[1]), fresh[1]


@pytest.fixture(scope="module")
def apgd_record(linear_submission, tmp_path_factory) -> Path:
    """A record of APGD, an attack built on the device the replay passes it (as ``str(device)``), on 10 examples."""
    results = tmp_path_factory.mktemp("apgd")
    args = [*ARGS[:4], "--attacks", "apgd", "--n-examples", "10", "--device", "cpu"]
    assert main(["evaluate", str(linear_submission), *args, "--results-dir", str(results)]) == 0
    (path,) = results.rglob("*.json")
    return path


def test_a_replay_rebuilds_the_attacks_on_the_verifiers_device(apgd_record, linear_submission, capsys):
    """Both replays of an APGD record run on the device verify was given (an attack on no device cannot be built)."""
    breaks = read_record(apgd_record).evidence.status.count("0")
    survivors = read_record(apgd_record).evidence.status.count("+")
    assert survivors >= 2, survivors
    code, output = _verify_with(apgd_record, linear_submission, capsys, "--replay", "all")
    assert code == 0 and f"10 examples: {breaks} breaks confirmed, 10 re-run as recorded, 0 failed" in output, output
    code, output = _verify_with(apgd_record, linear_submission, capsys, "--replay", "2", "--replay-seed", "3")
    assert code == 0 and f"{breaks} breaks confirmed, 2 replayed (--replay-seed 3), 0 failed" in output, output


def test_verify_record_picks_the_replay_seed_when_given_none(record_file, linear_submission):
    """The Python API without ``replay_seed``: the verifier picks one and the verdict names it (the command line
    picks its own and prints it). Whether the two survivors hold under that seed's attack is left open: a fresh
    seed may break a borderline one (then the verdict fails, as it should)."""
    verdict = verify_record(record_file, linear_submission, device="cpu", replay=2)
    assert verdict.replayed == 2, verdict.summary()
    assert isinstance(verdict.replay_seed, int) and 0 <= verdict.replay_seed < 2**31, verdict.replay_seed


def test_a_fresh_replay_seed_is_a_31_bit_number_nobody_can_guess():
    """31 bits, like every seed ``derive_seed`` makes; over 64 draws, one of them at least 2**30 (each draw is
    below it with probability 1/2: all 64 with 2**-64) and no two the same."""
    from robbench.verify import new_replay_seed

    seeds = [new_replay_seed() for _ in range(64)]
    assert all(0 <= seed < 2**31 for seed in seeds) and max(seeds) >= 2**30 and len(set(seeds)) == 64, seeds


def test_a_model_named_with_model_is_looked_up_in_the_submissions_folder_given(record_file, linear_submission,
                                                                             tmp_path, capsys):
    """``--model NAME --submissions-dir DIR``: NAME is DIR's submission, not the repository's (which has no such model)."""
    folder = tmp_path / "elsewhere" / "fashion-mnist" / "fmnist-linear"
    folder.mkdir(parents=True)
    for file in linear_submission.parent.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    code = main(["verify", str(record_file), "--model", "fmnist-linear", "--submissions-dir", str(tmp_path / "elsewhere"),
                 "--device", "cpu"])
    output = capsys.readouterr()
    assert code == 0 and "60 examples: 32 breaks confirmed, 0 failed" in output.out, output


def test_verify_over_many_records_reports_each_and_goes_on(record_file, linear_submission, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere" / record_file.name
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(record_file.read_bytes())  # no .adv.npz beside it
    unknown = tmp_path / "unknown.json"
    data = json.loads(record_file.read_text())
    data["config"]["name"] = "nobody"
    unknown.write_text(json.dumps(data))
    code = main(["verify", str(unknown), str(elsewhere), str(record_file), "--submissions-dir", str(tmp_path / "none"),
                 "--device", "cpu"])
    output = capsys.readouterr()
    assert code == 2, output  # nothing failed, but not everything could be checked
    lines = output.err.strip().splitlines()
    assert lines[0].startswith(f"{unknown}: cannot check: model 'nobody': no submissions folder")
    assert lines[1].startswith(f"{elsewhere}: cannot check: model 'fmnist-linear': no submissions folder")
    assert lines[-1] == "0 of 3 records verified, 0 failed, 3 could not be checked"
    code = main(["verify", str(elsewhere), str(record_file), "--model", str(linear_submission), "--device", "cpu"])
    output = capsys.readouterr()
    assert code == 1 and f"{elsewhere}: 60 examples: 0 breaks confirmed, 1 failed; first: {adversarial_path(elsewhere).name} is missing" in output.err
    assert f"{record_file}: 60 examples: 32 breaks confirmed, 0 failed" in output.out
    assert "1 of 2 records verified, 1 failed, 0 could not be checked" in output.err


def _verify_with(record_file: Path, linear_submission: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["verify", str(record_file), "--model", str(linear_submission), "--device", "cpu", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --------------------------------------------------------------------------------------------
# the record's own CPU thread count


@pytest.mark.parametrize("device, threads", [("cpu (1 threads)", 1), ("cpu (12 threads)", 12),
                                             ("cuda (NVIDIA H100 80GB HBM3)", None), ("cpu (1234567 threads)", None)])
def test_the_records_cpu_threads_are_read_from_its_device(record_file, device, threads):
    record = read_record(record_file)
    assert record.model_copy(update={"config": record.config.model_copy(update={"device": device})}).cpu_threads == threads


@pytest.fixture
def one_thread_process(monkeypatch):
    """This process on one torch thread, kept by the command line's policy (OMP_NUM_THREADS set); restored after."""
    from robbench.threads import threads_set

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with threads_set(1):
        yield


def test_a_cpu_record_is_verified_on_its_own_thread_count(record_file, linear_submission, capsys, monkeypatch,
                                                          one_thread_process):
    """CPU float rounding moves with the thread count (a committed record made on one thread fails on two at a
    borderline example): without --threads, every prediction runs on the threads the record names."""
    import robbench.verify

    forged = _forge(record_file, lambda data: data["config"].update(device="cpu (3 threads)"))
    seen = []

    def observed(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return predict(*args, **kwargs)

    predict = robbench.verify.predict
    monkeypatch.setattr(robbench.verify, "predict", observed)
    code, output = _verify(forged, linear_submission, capsys)
    assert code == 0, output
    assert seen == [3] and "60 examples (on the record's 3 CPU threads, not this process's 1): 32 breaks" in output
    assert torch.get_num_threads() == 1  # restored for the next record

    code, output = _verify_with(forged, linear_submission, capsys, "--threads", "2")
    assert code == 0 and seen == [3, 2] and "60 examples: 32 breaks confirmed" in output  # --threads wins, unremarked


def test_a_record_naming_no_usable_thread_count_cannot_be_checked(record_file, linear_submission, capsys,
                                                                   one_thread_process):
    forged = _forge(record_file, lambda data: data["config"].update(device="cpu (0 threads)"))
    code, output = _verify(forged, linear_submission, capsys)
    assert code == 2 and "the record names 0 CPU threads (config.device 'cpu (0 threads)'); pass --threads N (1 to 4096)" in output
    assert _verify_with(forged, linear_submission, capsys, "--threads", "1")[0] == 0


def test_a_gpu_record_is_verified_on_the_threads_as_set(record_file, linear_submission, capsys, one_thread_process):
    """A record made on a GPU names no CPU thread count: verify runs on the process's threads and says nothing of it."""
    forged = _forge(record_file, lambda data: data["config"].update(device="cuda (NVIDIA H100 80GB HBM3)"))
    code, output = _verify(forged, linear_submission, capsys)
    assert code == 0 and "60 examples: 32 breaks confirmed, 0 failed" in output, output


def test_the_largest_thread_count_a_record_may_name_is_4096(record_file):
    """1 to 4096 threads (``robbench.threads.MAX_THREADS``, the bound --threads has): 4096 is used, 4097 refused."""
    from robbench.errors import RobbenchError
    from robbench.verify import _record_threads

    record = read_record(record_file)

    def named(threads):
        return record.model_copy(update={"config": record.config.model_copy(update={"device": f"cpu ({threads} threads)"})})

    assert _record_threads(named(4096), torch.device("cpu"), None) == 4096
    with pytest.raises(RobbenchError, match=r"the record names 4097 CPU threads .*pass --threads N \(1 to 4096\)"):
        _record_threads(named(4097), torch.device("cpu"), None)


@pytest.mark.slow
def test_a_committed_one_thread_record_passes_verify_in_a_two_thread_process(tmp_path):
    """The committed Wong-Kolter record was made on one thread; on two, its saved example at test index 784 (a
    borderline margin) is classified correctly. verify must use the record's thread count, not the process's."""
    import os
    import subprocess
    import sys

    from .helpers import REPO

    record = REPO / "results/fashion-mnist/l2/fashion-mnist-convex-small-wong-kolter/pgd+autoattack-seed0-0-1000-c47e8e05f8.json"
    assert read_record(record).device == "cpu (1 threads)"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "robbench", "verify", str(record), "--device", "cpu"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    assert "1,000 examples (on the record's 1 CPU thread, not this process's 2): 720 breaks confirmed, 0 failed" in done.stdout
