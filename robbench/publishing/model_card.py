"""The README.md model card ``robbench submit`` uploads, built with huggingface_hub's card classes.

Its front matter (``ModelCardData``) carries license, library, the Hub ids of the datasets and the
results in the ``model-index`` schema (one ``EvalResult`` per accuracy, with the evaluation's
settings and flags in ``metric_args``); its text names the exact pinned weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from huggingface_hub import EvalResult, ModelCard, ModelCardData

if TYPE_CHECKING:
    from ..config import ModelSpec
    from ..hub_ref import HubRef
    from ..results import EvalRecord

#: robbench's dataset names -> the canonical dataset repos on the Hub (datasets without one are named as they are)
HUB_DATASETS = {
    "cifar10": "uoft-cs/cifar10",
    "cifar100": "uoft-cs/cifar100",
    "fashion-mnist": "zalando-datasets/fashion_mnist",
    "mnist": "ylecun/mnist",
}
LIBRARY_NAME = "robbench"


def hub_dataset(name: str) -> str:
    return HUB_DATASETS.get(name, name)


def model_card(spec: "ModelSpec", records: "list[EvalRecord]", weights: "HubRef", license: str) -> ModelCard:
    """The card for ``weights`` (pinned to a commit) with the submitter's local ``records``."""
    results, rows = [], []
    for record in records:
        threat = record.threat_model
        label = f"{threat.norm}, eps={threat.eps:g}" + ("" if threat.standard else ", non-standard")
        attacks = [attack.name for attack in record.attacks]
        flags = [flag.code for flag in record.flags]
        common = dict(
            task_type="image-classification", dataset_type=hub_dataset(record.dataset), dataset_name=record.dataset,
            dataset_split="test", metric_type="accuracy", verified=False,
        )
        results.append(EvalResult(**common, metric_name="clean accuracy", metric_value=_percent(record.clean_accuracy)))
        results.append(EvalResult(
            **common, metric_name=f"robust accuracy ({label})", metric_value=_percent(record.robust_accuracy),
            metric_args={
                "threat_model": threat.name, "norm": threat.norm, "eps": threat.eps, "attacks": attacks,
                "n_examples": record.n_examples, "seed": record.seed, "flags": flags,
            },
        ))
        rows.append(
            f"| {record.dataset} | {label} | {_percent(record.clean_accuracy):.2f} | {_percent(record.robust_accuracy):.2f} "
            f"| {', '.join(attacks)} | {record.n_examples} | {', '.join(flags) or 'none'} |"
        )
    data = ModelCardData(
        model_name=spec.name, license=license, library_name=LIBRARY_NAME,
        datasets=sorted({hub_dataset(record.dataset) for record in records}),
        tags=["robbench", "adversarial-robustness", "safetensors"], pipeline_tag="image-classification",
        eval_results=results,
    )
    text = "\n".join([
        f"# {spec.name}", "",
        f"`{spec.architecture}` on `{spec.dataset}`, submitted with robbench. Accuracies in %, measured locally "
        "by the submitter; a leaderboard re-evaluates the pinned weights. Flags are robbench's reasons to doubt "
        "a number (see its README).", "",
        "| dataset | threat model | clean | robust | attacks | examples | flags |", "|---|---|---|---|---|---|---|", *rows, "",
        "The weights, pinned to their commit:", "", f"    {weights}", "",
        "Evaluate them, or load them in Python:", "",
        f"    robbench evaluate {weights}",
        f"    python -c \"import robbench; model = robbench.load_model('{weights}')\"", "",
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")


def _percent(fraction: float) -> float:
    return round(100 * fraction, 2)
