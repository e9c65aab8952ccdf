"""torchrun scale-out: a 2-process evaluation on CPU (gloo) gives the single-process record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from robbench.distributed import World, is_main_process, world
from robbench.results import adversarial_path

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
VOLATILE = ("wall_time_s", "timestamp", "device")  # what may differ between the two runs

pytestmark = pytest.mark.timeout(900)  # a torchrun subprocess may take up to 600 s on a loaded machine


def _env() -> dict[str, str]:
    """One thread per process (the same arithmetic in both runs), and no torchrun variables inherited."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("n, batch_size, size", [(30, 3, 2), (31, 4, 3), (5, 8, 2), (100, 7, 4), (3, 1, 4)])
def test_blocks_are_contiguous_whole_batches_covering_every_example(n, batch_size, size):
    blocks = [World(rank, size).block(n, batch_size) for rank in range(size)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    for (_, stop), (start, _) in zip(blocks, blocks[1:]):
        assert stop == start
    assert all(start % batch_size == 0 for start, _ in blocks)
    sizes = [-(-(stop - start) // batch_size) for start, stop in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_every_batch_has_one_owner_and_rounds_close_after_each_rank_had_one():
    size, count = 3, 8
    owners = [[rank for rank in range(size) if World(rank, size).owns(p)] for p in range(count)]
    assert owners == [[p % size] for p in range(count)]
    ends = [p for p in range(count) if World(0, size).round_ends(p, count)]
    assert ends == [2, 5, 7]
    assert [p for p in range(count) if World().round_ends(p, count)] == list(range(count))


def test_without_torchrun_everything_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert world() == World() and not world().active and is_main_process()
    assert World().describe("cpu (1 threads)") == "cpu (1 threads)"
    assert World(1, 2).describe("cpu (1 threads)") == "cpu (1 threads) x 2 processes (torchrun)"


@pytest.mark.slow
@pytest.mark.torchrun
def test_two_process_evaluate_writes_the_single_process_record(linear_submission, tmp_path):
    # eps 0.05: PGD breaks most clean-correct examples; its 21 come in 7 batches (4 rounds, the last
    # with one batch), and AutoAttack's components get the 5 survivors in 2 batches
    args = [
        "evaluate", str(linear_submission), "--threat-model", "linf", "--eps", "0.05", "--attacks", "pgd,autoattack",
        "--n-examples", "30", "--batch-size", "3", "--device", "cpu",
    ]
    _run([sys.executable, "-m", "robbench", *args, "--results-dir", str(tmp_path / "single")], tmp_path)
    _run([*TORCHRUN, "-m", "robbench", *args, "--results-dir", str(tmp_path / "multi")], tmp_path)

    (single_path,) = (tmp_path / "single").rglob("*.json")
    (multi_path,) = (tmp_path / "multi").rglob("*.json")  # another run id: the device is part of the configuration
    single, multi = json.loads(single_path.read_text()), json.loads(multi_path.read_text())
    assert multi["config"].pop("device") == f"{single['config'].pop('device')} x 2 processes (torchrun)"
    assert multi["adversarial_examples"].pop("file") != single["adversarial_examples"].pop("file")  # named by the run
    assert {k: v for k, v in multi.items() if k not in VOLATILE} == {k: v for k, v in single.items() if k not in VOLATILE}
    assert adversarial_path(multi_path).read_bytes() == adversarial_path(single_path).read_bytes()  # bit for bit
    assert [s["n_attacked"] for a in single["attacks"] for s in a["stages"]] == [21, 5, 5, 5, 5]
    assert not list((tmp_path / "multi").rglob(".*.state")), "the resumable state is removed at the end"


SCRIPT = """
import json, sys
import torch
from robbench import distributed
from robbench.attacks import AttackRules, create_attack
from robbench.config import load_model_spec
from robbench.evaluation import run_attacks
from robbench.loader import load_submission
from robbench.threat_models import get_threat_model

spec, out = sys.argv[1], sys.argv[2]
loaded = load_submission(load_model_spec(spec))
x, y = loaded.dataset.load("test", 40)
threat = get_threat_model(loaded.dataset, "linf").with_eps(0.05)
attacks = [create_attack("autoattack")]
attacked = []  # examples this process attacked, per stage call

def counting(attack):
    stages = attack.stages
    def wrapped(model, rules):
        result = []
        for stage in stages(model, rules):
            def run(xb, yb, seed, _run=stage.run):
                attacked.append(int(xb.shape[0]))
                return _run(xb, yb, seed)
            result.append(type(stage)(stage.name, run))
        return result
    attack.stages = wrapped
    return attack

outcome = run_attacks(
    loaded.model, x, y, rules=AttackRules.for_dataset(loaded.dataset, threat, seed=3),
    attacks=[counting(a) for a in attacks], batch_size=4,
)
rank = distributed.world().rank
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({
        "robust": outcome.robust_mask.tolist(), "clean": outcome.clean_accuracy,
        "stages": [[s.name, s.n_attacked, s.n_broken] for a in outcome.attacks for s in a.stages],
        "attacked": sum(attacked),
    }, f)
distributed.leave()
"""


@pytest.mark.slow
@pytest.mark.torchrun
def test_two_processes_share_the_batches_and_agree_per_example(linear_submission, tmp_path):
    script = tmp_path / "attack.py"
    script.write_text(SCRIPT, encoding="utf-8")
    (tmp_path / "single").mkdir()
    (tmp_path / "multi").mkdir()
    _run([sys.executable, str(script), str(linear_submission), str(tmp_path / "single")], tmp_path)
    _run([*TORCHRUN, str(script), str(linear_submission), str(tmp_path / "multi")], tmp_path)

    single = json.loads((tmp_path / "single" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "multi" / f"rank{r}.json").read_text()) for r in range(2)]
    for rank in ranks:  # every rank ends with the whole result, per example
        assert (rank["robust"], rank["clean"], rank["stages"]) == (single["robust"], single["clean"], single["stages"])
    assert ranks[0]["attacked"] > 0 and ranks[1]["attacked"] > 0, "both ranks attacked batches"
    assert ranks[0]["attacked"] + ranks[1]["attacked"] == single["attacked"], "no batch was attacked twice"
    assert single["stages"][0][2] > 0 and single["stages"][0][1] > 8, "apgd-ce broke examples in several batches"


DDP_SCRIPT = """
import sys
import torch
import torch.nn.functional as F
from robbench import distributed
from robbench.attacks.pgd import pgd_perturb
from robbench.models import create_model

world = distributed.world()
torch.manual_seed(0)
model = create_model("small-cnn")
ddp = world.wrap_ddp(model, torch.device("cpu"))
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
y = torch.arange(8) % 10
index = world.shard(torch.arange(8))  # this rank's half of the global batch
for step in range(2):
    distributed.unwrap(ddp).eval()  # attack the inner module: no DDP reducer armed for input gradients
    x_adv = pgd_perturb(distributed.unwrap(ddp), x[index], y[index], norm="Linf", eps=0.1, steps=2, step_size=0.05,
                        value_range=(0.0, 1.0), generator=torch.Generator().manual_seed(world.rank), keep_first_success=False)
    ddp.train()
    loss = F.cross_entropy(ddp(x_adv), y[index])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
total = world.sum([float(loss) * len(index), len(index)])
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
torch.save({"params": flat, "total": total}, f"{sys.argv[1]}/rank{world.rank}.pt")
distributed.leave()
"""


@pytest.mark.slow
@pytest.mark.torchrun
def test_ddp_helpers_keep_the_replicas_identical(tmp_path):
    """What `robbench train` under torchrun relies on: attack the unwrapped model, update through DDP."""

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    _run([*TORCHRUN, str(script), str(tmp_path)], tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0]["params"], ranks[1]["params"]), "DDP all-reduced the gradients"
    assert ranks[0]["total"] == ranks[1]["total"] and ranks[0]["total"][1] == 8


def _train_config(path: Path, **config) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.torchrun
@pytest.mark.needs_data
def test_two_process_training_takes_the_single_process_steps(tmp_path):
    """Without batch norm or dropout, DDP over a split global batch is the global batch's step.

    250 examples in batches of 63 give every rank a share of 31 or 32 examples (30 or 31 in the
    last batch): the gradient weighting must make the uneven shares' step the global mean, or the
    weights drift apart.
    """
    config = _train_config(
        tmp_path / "train.yaml", name="tiny-standard", dataset="fashion-mnist", architecture="linear",
        method="standard", epochs=2, n_train=250, batch_size=63, lr=0.1, eval_examples=50, eval_attack_steps=3,
    )
    args = ["train", str(config), "--device", "cpu"]
    _run([sys.executable, "-m", "robbench", *args, "--out", str(tmp_path / "single")], tmp_path)
    _run([*TORCHRUN, "-m", "robbench", *args, "--out", str(tmp_path / "multi")], tmp_path)

    single, multi = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("single", "multi"))
    assert single.keys() == multi.keys()
    for key in single:
        torch.testing.assert_close(multi[key], single[key], rtol=1e-5, atol=1e-6)
    logs = [json.loads((tmp_path / run / "train_log.json").read_text()) for run in ("single", "multi")]
    assert [e["loss"] for e in logs[1]["epochs"]] == pytest.approx([e["loss"] for e in logs[0]["epochs"]], rel=1e-5)
    assert [e["clean_accuracy"] for e in logs[1]["epochs"]] == [e["clean_accuracy"] for e in logs[0]["epochs"]]
    assert logs[1]["cost"]["device"] == f"{logs[0]['cost']['device']} x 2 processes (torchrun)"
    assert logs[1]["cost"]["train_examples"] == 250


INTERRUPTED_TRAINING = """
import sys
from pathlib import Path
import yaml
from robbench.config import TrainSpec
from robbench.training.loop import train

def crash(entry):  # rank 0, right after epoch 1's state is saved; torchrun then stops rank 1
    raise SystemExit(3)

train(TrainSpec(**yaml.safe_load(open(sys.argv[1]))), Path(sys.argv[2]), device="cpu", data_dir=sys.argv[3], log=crash)
"""


@pytest.mark.slow
@pytest.mark.torchrun
def test_two_process_trades_with_batch_norm_resumes_exactly_and_saves_what_it_evaluated(tmp_path, tiny_cifar_dir):
    from robbench import evaluate
    from robbench.config import TrainSpec
    from robbench.errors import RobbenchError
    from robbench.training.loop import STATE_FILE, train

    settings = dict(
        name="tiny-trades", dataset="cifar10", architecture="preact-resnet18", architecture_kwargs={"width": 4},
        method="trades", epochs=2, batch_size=16, lr=0.05, attack_steps=2, crop_padding=4, horizontal_flip=True,
        holdout=16, eval_examples=16, eval_attack_steps=2,
    )
    config = _train_config(tmp_path / "train.yaml", **settings)
    args = ["train", str(config), "--device", "cpu", "--data-dir", tiny_cifar_dir]
    _run([*TORCHRUN, "-m", "robbench", *args, "--out", str(tmp_path / "whole")], tmp_path)

    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_TRAINING, encoding="utf-8")
    parts = tmp_path / "parts"
    done = subprocess.run([*TORCHRUN, str(script), str(config), str(parts), tiny_cifar_dir], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and (parts / STATE_FILE).is_file() and not (parts / "model.safetensors").exists()
    with pytest.raises(RobbenchError, match="written by 2 process"):
        train(TrainSpec(**settings), parts, device="cpu", data_dir=tiny_cifar_dir, resume=True)
    _run([*TORCHRUN, "-m", "robbench", *args, "--out", str(parts), "--resume"], tmp_path)

    whole, resumed = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("whole", "parts"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole), "resumed bit for bit, every rank's generators restored"
    assert any("running_mean" in k for k in whole), "the model has batch norm"
    log = json.loads((tmp_path / "whole" / "train_log.json").read_text())
    (record,) = evaluate(tmp_path / "whole" / "model.yaml", threat_models="linf", attacks=[], n_examples=16, device="cpu",
                         data_dir=tiny_cifar_dir, results_dir=tmp_path / "results")
    selected = next(e for e in log["epochs"] if e["epoch"] == log["selected_epoch"])
    assert record.clean_accuracy == selected["clean_accuracy"], "the saved running statistics are the evaluated ones"
