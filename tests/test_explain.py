"""``robbench explain``: the paper's gradient display, the metrics, targeted large-eps PGD, the report."""

from __future__ import annotations

import json

import pytest
import torch

from robbench.cli import main
from robbench.data import get_dataset
from robbench.errors import RobbenchError
from robbench.reports import explain_page
from robbench.reports.common import result_json, write_report
from robbench.reports.explain import ExplainConfig, ExplainResult, run
from robbench.reports.explain_metrics import (
    energy_on_object,
    first_true,
    interpolate,
    monotonicity,
    object_mask,
    pearson,
    rescale_gradient,
    targeted_large_eps,
)
from robbench.reports.explain_page import render_adversarial_png, render_gradients_png, render_interpolation_png
from robbench.threat_models import linf
from robbench.training.steps import train_new_model

from .helpers import fit_linear_fashion_mnist, write_submission


def test_rescale_gradient_maps_into_unit_interval():
    g = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    g[0, 0, 0, 0] = 50.0  # an outlier is clipped at mean + 3 std instead of squashing every other pixel to 0
    scaled = rescale_gradient(g)
    assert scaled.shape == g.shape and scaled.min() >= 0 and scaled.max() <= 1
    assert torch.allclose(scaled.flatten(1).amin(1), torch.zeros(4)) and torch.allclose(scaled.flatten(1).amax(1), torch.ones(4))
    assert float(scaled[0].flatten()[1:].std()) > 0.08  # without the clip: about 1/53
    assert torch.equal(rescale_gradient(torch.full((1, 1, 4, 4), 3.0)), torch.full((1, 1, 4, 4), 0.5))
    # order-preserving inside the clip range
    row = torch.tensor([[[[-1.0, 0.0, 1.0, 2.0]]]])
    assert torch.equal(rescale_gradient(row).flatten().argsort(), torch.arange(4))


def test_energy_on_object_is_one_on_the_object_and_zero_off_it():
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, 2:6, 2:6] = 0.8
    on, off = torch.zeros_like(x), torch.randn(2, 1, 8, 8)
    on[:, :, 3:5, 2:6] = torch.randn(2, 1, 2, 4)
    off = off * (~object_mask(x, 0.1))
    assert torch.allclose(energy_on_object(on, x, 0.1), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(energy_on_object(off, x, 0.1), torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(energy_on_object(torch.ones_like(x), x, 0.1), torch.full((2,), 16 / 64, dtype=torch.float64))
    assert float(energy_on_object(torch.zeros_like(x), x, 0.1).sum()) == 0


def test_path_metrics():
    assert torch.allclose(pearson(torch.arange(5.0).view(1, 5), 2 * torch.arange(5.0).view(1, 5) + 1), torch.ones(1, dtype=torch.float64))
    values = torch.tensor([[0.0, 0.2, 0.9, 1.0], [0.0, 0.8, 0.2, 0.6]])
    assert monotonicity(values).tolist() == pytest.approx([1.0, 0.6 / (0.8 + 0.6 + 0.4)])
    ts = [0.0, 0.25, 0.5, 1.0]
    flips = first_true(torch.tensor([[False, False, True, True], [False, False, False, False]]), ts)
    assert flips[0] == 0.5 and torch.isnan(flips[1])
    x, x_adv = torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)
    path = interpolate(x, x_adv, ts)
    assert path.shape == (4, 3, 1, 2, 2) and torch.equal(path[0], x) and torch.equal(path[-1], x_adv) and float(path[1].max()) == 0.25


def test_targeted_large_eps_reaches_the_target_on_a_linear_model():
    model = fit_linear_fashion_mnist(n=1000, steps=60)
    x, y = get_dataset("fashion-mnist").load("test", 30)
    target = (y + 1) % 10
    with torch.no_grad():
        assert float((model(x).argmax(1) == target).double().mean()) <= 0.2
    # eps = 8: every target lies inside the ball (at eps = 4 two of these 30 are out of reach of the [0, 1] box)
    x_adv = targeted_large_eps(model, x, target, eps=8.0, steps=50)
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= 8.0 + 1e-4
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1), target)
    # at eps = 4 the target's cross-entropy still falls for every image
    x_adv = targeted_large_eps(model, x, target, eps=4.0, steps=50)
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(model(x), target, reduction="none")
        after = torch.nn.functional.cross_entropy(model(x_adv), target, reduction="none")
    assert bool((after < before - 1).all()) and float((model(x_adv).argmax(1) == target).double().mean()) >= 0.9


@pytest.fixture(scope="module")
def submissions(tmp_path_factory) -> list:
    """A standard and a (briefly) PGD-AT linear model as submissions."""
    folder = tmp_path_factory.mktemp("explain")
    dataset = get_dataset("fashion-mnist")
    x, y = dataset.load("test")
    x, y = x[5000:6000], y[5000:6000]
    robust = train_new_model(
        x, y, dataset=dataset, architecture="linear", architecture_kwargs=None, threat=linf(0.1),
        steps=60, batch_size=100, lr=0.05, momentum=0.9, weight_decay=0.0, attack_steps=3, seed=0,
        device=torch.device("cpu"),
    )
    standard = fit_linear_fashion_mnist(n=1000, steps=60)
    return [
        write_submission(folder / "std", "tiny-standard", "linear", standard.state_dict()),
        write_submission(folder / "at", "tiny-pgd-at", "linear", robust.state_dict(), metadata={"training": "pgd-at"}),
    ]


SMALL = dict(classes=(0, 1, 7), n_per_class=2, steps=10, judge_steps=20, judge_architecture="linear", device="cpu")


@pytest.fixture(scope="module")
def explained(submissions) -> ExplainResult:
    return run(ExplainConfig(model_yamls=submissions, **SMALL))


@pytest.mark.slow
def test_explain_numbers_and_comparisons(explained):
    assert [m.name for m in explained.models] == ["tiny-standard", "tiny-pgd-at"]
    assert explained.config["n_images"] == 6 and explained.config["n_pairs"] == 12  # 6 images x 2 other classes
    assert all(0 <= i < 2000 for i in explained.config["image_indices"])  # explained images are outside the judge's data
    for m in explained.models:
        assert m.perturbation_l2 <= 4.0 + 1e-4
        for key in ("gradient_energy_on_object", "judge_target_rate", "path_agreement", "model_target_rate"):
            assert 0 <= m.metrics[key]["mean"] <= 1
    assert {c.metric for c in explained.comparisons} == {
        "gradient_energy_on_object", "gradient_image_correlation", "judge_target_rate", "judge_target_rate_where_reached",
        "class_mean_cosine", "path_agreement", "path_agreement_where_reached"}
    for m in explained.models:  # the restricted metrics count only the pairs the attack moved to the target
        reached = round(m.metrics["model_target_rate"]["mean"] * 12)
        assert m.metrics["judge_target_rate_where_reached"]["n"] == reached == m.metrics["path_agreement_where_reached"]["n"]
    assert all(c.robust == "tiny-pgd-at" and c.standard == "tiny-standard" for c in explained.comparisons)
    public = json.loads(result_json(explained))
    assert "pictures" not in public and public["models"][0]["metrics"]["object_area"]["n"] == 6
    # the dataset's facts come from the dataset, not from the renderer
    assert public["dataset"]["class_names"][:2] == ["T-shirt", "Trouser"] and public["dataset"]["standard_linf_eps"] == 0.1


@pytest.mark.slow
def test_explain_is_deterministic(submissions, explained):
    threads = torch.get_num_threads()
    again = run(ExplainConfig(model_yamls=submissions, **SMALL))
    assert torch.get_num_threads() == threads  # one thread while it runs on the CPU, then restored
    assert again.models[0].metrics == explained.models[0].metrics
    assert again.comparisons == explained.comparisons
    for render in (render_gradients_png, render_adversarial_png, render_interpolation_png):
        assert render(again) == render(explained)


@pytest.mark.slow
def test_explain_writes_page_and_pngs(explained, tmp_path):
    paths = write_report(explain_page, explained, tmp_path / "explain.md", tmp_path / "explain.json")
    names = [p.name for p in paths]
    assert names == ["explain.md", "explain-gradients.png", "explain-adversarial.png", "explain-interpolation.png", "explain.json"]
    text = (tmp_path / "explain.md").read_text(encoding="utf-8")
    assert "## Verdict" in text and "](explain-adversarial.png)" in text and "`tiny-pgd-at`" in text
    assert "(the baselines were trained at L∞ ε = 0.1, i.e. an L2 reach of at most 2.8 on 28×28)" in text
    for png in paths[1:4]:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and b"Software" not in data


@pytest.mark.slow
def test_explain_validation(submissions, tmp_path):
    with pytest.raises(RobbenchError):
        run(ExplainConfig(model_yamls=[], **SMALL))
    with pytest.raises(RobbenchError, match="same name"):
        run(ExplainConfig(model_yamls=[submissions[0], submissions[0]], **SMALL))
    with pytest.raises(RobbenchError, match="^classes must be at least two"):
        run(ExplainConfig(model_yamls=submissions, **{**SMALL, "classes": (3,)}))
    code = main(["explain", str(submissions[1]), "--classes", "0,1", "--n-per-class", "1", "--steps", "3", "--judge",
                 str(submissions[0]), "--device", "cpu", "--out", str(tmp_path / "explain.md")])
    assert code == 0 and (tmp_path / "explain-gradients.png").is_file()
    assert "No verdict" in (tmp_path / "explain.md").read_text(encoding="utf-8")  # one model: nothing to compare
