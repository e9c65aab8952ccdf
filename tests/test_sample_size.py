"""``robbench sample-size``: nested class-balanced subsets, fixed-step training, the table, the plot, the verdict."""

from __future__ import annotations

import json

import pytest
import torch

from robbench.cli import main
from robbench.errors import RobbenchError
from robbench.reports import sample_size_page
from robbench.reports.common import jsonable, write_report
from robbench.reports.sample_size import Run, SampleSizeConfig, SampleSizeResult, _summarise, _verdict, nested_order, run
from robbench.reports.sample_size_page import render_png

TINY = dict(
    sizes=(20, 60), eps=(0.0, 0.1), steps=6, batch_size=16, attack_steps=2, robust_examples=40, n_test=200,
    architecture="linear", device="cpu", workers=1,
)


@pytest.fixture(scope="module")
def result() -> SampleSizeResult:
    return run(SampleSizeConfig(seed=1, **TINY))


def test_nested_order_is_a_balanced_seeded_permutation():
    y = torch.arange(10).repeat_interleave(30)[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    order = nested_order(y, 10, seed=3)
    assert sorted(order.tolist()) == list(range(300))
    for n in (10, 50, 100):  # every prefix of a multiple of 10 has n/10 examples of each class
        assert torch.bincount(y[order[:n]], minlength=10).tolist() == [n // 10] * 10
    assert torch.equal(order, nested_order(y, 10, seed=3))
    assert not torch.equal(order, nested_order(y, 10, seed=4))


@pytest.mark.slow
@pytest.mark.needs_data
def test_tiny_run_measures_every_cell(result):
    assert [row.size for row in result.table] == [20, 60]
    assert len(result.runs) == 4 and {(r.size, r.eps) for r in result.runs} == {
        (20, 0.0), (20, 0.1), (60, 0.0), (60, 0.1)}
    for entry in result.runs:
        assert 0 <= entry.robust_accuracy <= 1 and 0 <= entry.standard_accuracy <= 1
        assert "correct" not in jsonable(entry)
    assert result.dataset["n_test"] == 200 and result.config["robust_examples"] == 40
    assert [c.size for c in result.comparisons] == [20, 60]
    json.dumps(jsonable(result), allow_nan=False)  # every number is finite


@pytest.mark.slow
@pytest.mark.needs_data
def test_deterministic_for_a_seed(result):
    again = run(SampleSizeConfig(seed=1, **TINY))
    strip = lambda r: {k: v for k, v in jsonable(r).items() if k != "wall_time_s"} | {
        "runs": [{k: v for k, v in entry.items() if "seconds" not in k} for entry in jsonable(r)["runs"]]}
    assert strip(again) == strip(result)
    assert render_png(again) == render_png(result)


@pytest.mark.slow
@pytest.mark.needs_data
def test_worker_processes_give_the_same_numbers(result):
    threads = torch.get_num_threads()
    parallel = run(SampleSizeConfig(seed=1, **{**TINY, "workers": 2}))
    assert torch.get_num_threads() == threads
    assert parallel.table == result.table and parallel.comparisons == result.comparisons
    assert parallel.config["workers"] == 2


@pytest.mark.slow
@pytest.mark.needs_data
def test_writes_markdown_png_and_json(result, tmp_path):
    paths = write_report(sample_size_page, result, tmp_path / "reports" / "sample-size.md", tmp_path / "reports" / "sample-size.json")
    markdown, png, data = paths
    text = markdown.read_text(encoding="utf-8")
    assert "](sample-size.png)" in text and "| 20 |" in text and "| 60 |" in text and "## Verdict" in text
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in png.read_bytes()
    loaded = json.loads(data.read_text(encoding="utf-8"))
    assert loaded["table"] == jsonable(result.table)


def _runs(accuracies: dict[tuple[int, float], float], n: int = 2000) -> list[Run]:
    """Runs whose per-image correctness reaches the given accuracies (the first k images right)."""
    runs = []
    for (size, eps), acc in accuracies.items():
        correct = torch.zeros(n, dtype=torch.bool)
        correct[: round(acc * n)] = True
        runs.append(Run(size, eps, 0, 0, standard_accuracy=acc, robust_accuracy=0.0, train_accuracy=1.0, train_seconds=0.0,
                        seconds=0.0, correct=correct))
    return runs


def test_verdict_finds_the_crossing_only_when_it_is_measured():
    crossing = _runs({(100, 0.0): 0.60, (100, 0.1): 0.70, (1000, 0.0): 0.80, (1000, 0.1): 0.80,
                      (10000, 0.0): 0.90, (10000, 0.1): 0.85})
    table, comparisons = _summarise(crossing, [100, 1000, 10000], [0.0, 0.1], z=2.0)
    assert [c.effect for c in comparisons] == ["helps", "no measurable difference", "costs"]
    assert comparisons[0].difference == pytest.approx(0.10) and comparisons[2].difference == pytest.approx(-0.05)
    (verdict,) = _verdict(comparisons)
    assert verdict.crossing_measured and verdict.helps_at_sizes == [100] and verdict.costs_at_sizes == [10000]
    assert 100 < verdict.crossing_size <= 1000
    assert table[0].by_eps["0.1"]["standard_accuracy"] == pytest.approx(0.70)

    always_worse = _runs({(100, 0.0): 0.60, (100, 0.1): 0.55, (10000, 0.0): 0.90, (10000, 0.1): 0.85})
    (verdict,) = _verdict(_summarise(always_worse, [100, 10000], [0.0, 0.1], z=2.0)[1])
    assert not verdict.crossing_measured and not verdict.helps_at_smallest and verdict.costs_at_largest
    assert verdict.crossing_size is None


@pytest.mark.needs_data
def test_presets_and_validation():
    assert SampleSizeConfig.from_preset("cpu").sizes == (100, 300, 1000, 3000, 10000)
    assert SampleSizeConfig.from_preset("cpu").eps == (0.0, 0.1)
    gpu = SampleSizeConfig.from_preset("gpu", steps=10, seed=None)
    assert gpu.steps == 10 and gpu.seed == 0 and max(gpu.sizes) == 60000 and gpu.preset == "gpu"
    with pytest.raises(RobbenchError, match="^preset 'tpu' is unknown; use cpu or gpu"):
        SampleSizeConfig.from_preset("tpu")
    with pytest.raises(RobbenchError, match="^SampleSizeConfig: key 'eps': must include 0"):
        run(SampleSizeConfig(**{**TINY, "eps": (0.1,)}))
    with pytest.raises(RobbenchError, match="exceeds"):
        run(SampleSizeConfig(**{**TINY, "sizes": (100, 10**6)}))


@pytest.mark.slow
@pytest.mark.needs_data
def test_cli_writes_the_report(tmp_path):
    out = tmp_path / "sample-size.md"
    code = main([
        "sample-size", "--sizes", "20,40", "--eps", "0,0.1", "--steps", "3", "--batch-size", "16", "--attack-steps", "1",
        "--robust-examples", "20", "--architecture", "linear", "--device", "cpu", "--workers", "1", "--out", str(out),
    ])
    assert code == 0
    assert out.is_file() and (tmp_path / "sample-size.png").is_file()
    assert json.loads((tmp_path / "sample-size.json").read_text())["config"]["sizes"] == [20, 40]


@pytest.mark.slow
@pytest.mark.needs_data
def test_png_speaks_in_percent_like_its_page(result, monkeypatch):
    captured = []
    monkeypatch.setattr(sample_size_page, "png_bytes", lambda figure: captured.append(figure) or b"")
    render_png(result)
    for axes in captured[0].axes:
        assert axes.yaxis.get_major_formatter()(0.8) == "80%"
        assert all(axes.yaxis.get_major_formatter()(t).endswith("%") for t in axes.yaxis.get_majorticklocs())
