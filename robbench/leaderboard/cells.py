"""What every cell of a board or model page says, as plain text: one source for the markdown pages and the site.

Nothing here is escaped: the markdown renderer escapes each value, the site's templates autoescape.
Links are returned apart from their text and only where they are safe: http(s) URLs from the
submitter's metadata (a model's ``paper``: its training method's paper) and the Hub page of the
exact commit a hub-evaluated checkpoint was taken from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from ..config import TrainingCost
from ..formats import percent
from ..results import EvalRecord
from .entries import Entry

SUBSET_MARK = "†"
BELOW_REPORTED_MARK = "▼"
FLAG_MARK = "⚠"
TIE_MARK = "="
HUB_URL = "https://huggingface.co"

_SAFE_URL = re.compile(r"^https?://[^\s]+$", flags=re.IGNORECASE)


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) URL, else None: submitters write the metadata."""
    return url.strip() if url and _SAFE_URL.match(url.strip()) else None


def with_interval(value: float, interval: tuple[float, float]) -> str:
    """``72.50 (69.6–75.2)``: percent, with the 95 % Wilson interval."""
    return f"{100 * value:.2f} ({100 * interval[0]:.1f}–{100 * interval[1]:.1f})"


def gap(clean: float, robust: float) -> str:
    return f"{round(100 * clean, 2) - round(100 * robust, 2) + 0.0:.2f}"


def count(n: int) -> str:
    """Parameter counts, 3 significant digits: 11.2M, 431K, 850."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale * 0.9995:  # so 999,999 reads 1M, not 1e+03K
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def examples_text(entry: Entry) -> str:
    ex = entry.examples
    if ex.is_full:
        return f"{ex.count:,}"
    where = "" if ex.start == 0 else f" (test[{ex.start}:{ex.stop}])"
    return f"{ex.count:,} of {ex.test_size:,}{where} {SUBSET_MARK}"


def training_cost_text(cost: TrainingCost | None) -> str:
    """``epochs × images · time · device``, as robbench train measured it; an em dash when unknown."""
    if cost is None:
        return "—"
    minutes = cost.total_seconds / 60
    time_text = f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"{cost.epochs} × {count(cost.train_examples)} · {time_text} · {cost.device}"


def run_attacks_text(run: EvalRecord) -> str:
    return " → ".join(f"{a.name} {percent(a.accuracy)}" for a in run.attacks)


def attacks_text(entry: Entry) -> str:
    """Each run's attacks in order with the accuracy after each: ``pgd 74.10 → autoattack 72.50``."""
    return "; ".join(run_attacks_text(run) for run in entry.runs)


def breaks_text(entry: Entry) -> str:
    return ", ".join(f"{attack} {n}" for attack, n in entry.breaks_by.items()) or "none"


def rank_text(entry: Entry) -> str:
    return f"{TIE_MARK}{entry.rank}" if entry.tied_with_above else str(entry.rank)


def p_text(entry: Entry) -> str:
    return "—" if entry.p_vs_above is None else f"{entry.p_vs_above:.3g}"


def reported_text(entry: Entry) -> str:
    """The published robust accuracy for this board, or an em dash when the model reports none."""
    reported = entry.reported
    return "—" if reported is None else percent(reported.robust_accuracy)


def reported_gap_text(entry: Entry) -> str:
    """robbench's best-known minus the published robust accuracy, in points, ▼ when significantly below."""
    reported = entry.reported
    if reported is None:
        return "—"
    text = f"{100 * (entry.robust_accuracy - reported.robust_accuracy):+.2f}".replace("-", "−")
    return f"{text} {BELOW_REPORTED_MARK}" if entry.significantly_below_reported else text


def reported_sentence(entry: Entry) -> str | None:
    """One sentence for a model page: the published number, what measured it, where, and the test against it."""
    reported = entry.reported
    if reported is None:
        return None
    clean = "" if reported.clean_accuracy is None else f" (clean {percent(reported.clean_accuracy)} %)"
    on = "" if reported.n_examples is None else f" on {reported.n_examples:,} test examples"
    verdict = "significantly below it" if entry.significantly_below_reported else "not significantly below it"
    return (f"Reported {percent(reported.robust_accuracy)} % robust{clean}{on}, measured with: {reported.attack.rstrip('.')} "
            f"({reported.where}); robbench's best-known {percent(entry.robust_accuracy)} % on {entry.n:,} examples is "
            f"{verdict} (one-sided exact binomial test, p = {entry.below_reported_p():.3g}).")


def reported_source(entry: Entry) -> Link | None:
    reported = entry.reported
    return None if reported is None else Link(reported.source, safe_url(reported.source))


def flags_text(entry: Entry) -> str:
    """Each flag's code; a reliability flag that escalations addressed says what they did to the number."""
    return "; ".join([*(flag_text(entry, code) for code in entry.reliability_flags()), *entry.departures()])


def flag_text(entry: Entry, code: str) -> str:
    """``masked-gradients: 4 escalations in 2 rounds, best-known 10.70 → 3.10 % (p < 0.001)``, or the code alone."""
    summary = entry.escalation(code)
    if summary is None:
        return code
    rounds = "1 round" if summary.rounds == 1 else f"{summary.rounds} rounds"
    plural = "" if summary.escalations == 1 else "s"
    test = f"p = {summary.p:.2g}" if summary.p >= 0.001 else "p < 0.001"
    verdict = test if summary.significant else f"no significant change, {test}"
    return (f"{code}: {summary.escalations} escalation{plural} in {rounds}, best-known {percent(summary.before)} → "
            f"{percent(summary.after)} % ({verdict})")


@dataclass(frozen=True)
class Link:
    text: str
    url: str | None  # None: shown as plain text


def hub_link(record: EvalRecord) -> Link:
    """The Hub commit a hub-evaluated checkpoint came from (``ORG/REPO@abc1234``); an em dash for local weights."""
    repo, revision = record.checkpoint.repo, record.checkpoint.revision
    if not (repo and revision):
        return Link("—", None)
    return Link(f"{repo}@{revision[:7]}", safe_url(f"{HUB_URL}/{repo}/tree/{revision}"))


def paper_link(entry: Entry) -> Link:
    """The model's name, linked to its training method's paper when the metadata gives an http(s) one."""
    return Link(entry.name, safe_url(entry.primary.metadata.paper))


#: board columns, in order; ``model`` and ``hub`` are links, the rest plain text
BOARD_COLUMNS = (
    "rank", "model", "clean % (95% CI)", "robust % (95% CI)", "p vs. above", "attacks", "breaks by", "clean − robust",
    "training", "venue", "training cost", "extra data", "architecture", "params", "examples", "hub", "flags",
)
NUMERIC_COLUMNS = ("rank", "clean % (95% CI)", "robust % (95% CI)", "p vs. above", "clean − robust", "params", "examples")


def board_row(entry: Entry) -> dict[str, str | Link]:
    """One board row: every column of ``BOARD_COLUMNS``."""
    record = entry.primary
    return {
        "rank": rank_text(entry),
        "model": paper_link(entry),
        "clean % (95% CI)": with_interval(entry.clean_accuracy, entry.clean_interval()),
        "robust % (95% CI)": with_interval(entry.robust_accuracy, entry.robust_interval()),
        "p vs. above": p_text(entry),
        "attacks": attacks_text(entry),
        "breaks by": breaks_text(entry),
        "clean − robust": gap(entry.clean_accuracy, entry.robust_accuracy),
        "training": record.metadata.training,
        "venue": record.metadata.venue or "—",
        "training cost": training_cost_text(record.metadata.training_cost),
        "extra data": "yes" if record.metadata.extra_data else "no",
        "architecture": record.architecture,
        "params": count(record.parameter_count),
        "examples": examples_text(entry),
        "hub": hub_link(record),
        "flags": flags_text(entry),
    }


def _distinct(values: Iterable[str | None]) -> str | None:
    found = sorted({v for v in values if v})
    return "; ".join(found) if found else None


def model_facts(records: list[EvalRecord]) -> list[tuple[str, list[Link]]]:
    """A model page's facts (label, values), each from the metadata of its records; absent ones left out."""
    texts = [
        ("authors", _distinct(r.metadata.authors for r in records)),
        ("venue", _distinct(r.metadata.venue for r in records)),
        ("training", _distinct(r.metadata.training for r in records)),
        ("training cost", _distinct(
            training_cost_text(r.metadata.training_cost) + " (epochs × training images · wall time · device)"
            for r in records if r.metadata.training_cost
        )),
        # caveats are prose about the model as it is now, rewritten as runs land: the newest record's
        ("caveats", max(records, key=lambda r: r.timestamp).metadata.caveats),
        ("extra data", _distinct("yes" if r.metadata.extra_data else "no" for r in records)),
        ("architecture", _distinct(r.architecture for r in records)),
        ("parameters", _distinct(f"{r.parameter_count:,}" for r in records)),
        ("checkpoint SHA-256", _distinct(r.checkpoint.sha256 for r in records)),
    ]
    papers = sorted({r.metadata.paper for r in records if r.metadata.paper})
    hubs = sorted({hub_link(r) for r in records if r.checkpoint.repo}, key=lambda link: link.text)
    facts = [("paper of the training method", [Link(p, safe_url(p)) for p in papers])] if papers else []
    facts += [(label, [Link(text, None)]) for label, text in texts if text]
    return facts + ([("hub commit", hubs)] if hubs else [])


def run_row(stem: str, run: EvalRecord) -> dict[str, str]:
    """One evaluation behind a model's entry on the board ``stem``."""
    return {
        "board": stem,
        "run": run.config.run_id,
        "attacks": run_attacks_text(run),
        "robust % (this run)": percent(run.robust_accuracy),
        "seed": str(run.seed),
        "device": run.device,
        "wall time": f"{run.wall_time_s / 60:.1f} min",
        "saved adversarial examples": f"{run.adversarial_examples.count:,}" if run.adversarial_examples else "none",
        "date (UTC)": run.timestamp[:10],
    }
