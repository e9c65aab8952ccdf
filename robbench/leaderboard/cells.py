"""What every cell of a board or model page says, as plain text: one source for the markdown pages and the site.

Nothing here is escaped: the markdown renderer escapes each value, the site's templates autoescape.
Links are returned apart from their text and only where they are safe: http(s) URLs from the
submitter's metadata (a model's ``paper``: its training method's paper) and the Hub page of the
exact commit a hub-evaluated checkpoint was taken from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable

from ..config import TrainingCost
from ..formats import percent
from ..evidence import AttackResult
from ..results import EvalRecord, Examples
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


def examples_text(entry: Entry, mark: bool = True) -> str:
    """``10,000``, or ``1,000 of 10,000 †`` for a subset (without the mark where the whole board shares it)."""
    ex = entry.examples
    if ex.is_full:
        return f"{ex.count:,}"
    where = "" if ex.start == 0 else f" (test[{ex.start}:{ex.stop}])"
    return f"{ex.count:,} of {ex.test_size:,}{where}" + (f" {SUBSET_MARK}" if mark else "")


def training_cost_text(cost: TrainingCost | None) -> str:
    """``epochs × images · time · device``, as robbench train measured it; an em dash when unknown."""
    if cost is None:
        return "—"
    minutes = cost.total_seconds / 60
    time_text = f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return f"{cost.epochs} × {count(cost.train_examples)} · {time_text} · {cost.device}"


def run_attacks_text(run: EvalRecord) -> str:
    """``pgd 74.10 → autoattack 72.50``: each attack's name, or the name of its one stage where that refines it
    (``apgd-ce``, ``apgd-t``: two escalation runs of ``apgd`` with other losses stay apart)."""
    return " → ".join(f"{_attack_label(a)} {percent(a.accuracy)}" for a in run.attacks)


def _attack_label(attack: AttackResult) -> str:
    only = attack.stages[0].name if len(attack.stages) == 1 else ""
    return only if only.startswith(f"{attack.name}-") else attack.name


def attacks_text(entry: Entry) -> str:
    """Each run's attacks in order with the accuracy after each: ``pgd 74.10 → autoattack 72.50``."""
    return "; ".join(run_attacks_text(run) for run in entry.runs)


def breaks_text(entry: Entry) -> str:
    return ", ".join(f"{attack} {n}" for attack, n in entry.breaks_by.items()) or "none"


def rank_text(entry: Entry) -> str:
    return f"{TIE_MARK}{entry.rank}" if entry.tied_with_above else str(entry.rank)


def p_text(entry: Entry) -> str:
    return "—" if entry.p_vs_above is None else f"{entry.p_vs_above:.3g}"


def below_text(entry: Entry) -> str:
    """Whether the entry is significantly below the one ranked just above: yes, no, or — (not comparable)."""
    return "—" if entry.p_vs_above is None else ("no" if entry.tied_with_above else "yes")


def below_hover(entry: Entry) -> str:
    if entry.p_vs_above is None:
        return "first row, or evaluated on other examples than the row above: not compared"
    return f"exact McNemar test against the row above: p = {p_text(entry)}"


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
    return (f"{percent(reported.robust_accuracy)} % robust reported{clean}{on} ({reported.where}), measured with: "
            f"{reported.attack.rstrip('.')}; robbench's best-known {percent(entry.robust_accuracy)} % on {entry.n:,} "
            f"examples is {verdict} (one-sided exact binomial test, p = {entry.below_reported_p():.3g})")


def reported_hover(entry: Entry) -> str:
    reported = entry.reported
    return "no published number for this threat model" if reported is None else f"{reported.attack} ({reported.where})"


def reported_p_hover(entry: Entry) -> str:
    p = entry.below_reported_p()
    return "—" if p is None else f"exact one-sided binomial test against the reported accuracy: p = {p:.3g}"


def reported_facts(placed: "Iterable[tuple[str, Entry]]") -> list[tuple[str, list[Link]]]:
    """A model page's published numbers: per board (title, entry), the sentence and a link to its source."""
    facts = []
    for title, entry in placed:
        sentence, reported = reported_sentence(entry), entry.reported
        if sentence is not None:
            facts.append((f"reported ({title})", [Link(sentence, None), Link("source", safe_url(reported.source))]))
    return facts


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
    local: bool = False  # a page or file of ours (relative), never a submitter's URL


def hub_link(record: EvalRecord) -> Link:
    """The Hub commit a hub-evaluated checkpoint came from (``ORG/REPO@abc1234``); an em dash for local weights."""
    repo, revision = record.checkpoint.repo, record.checkpoint.revision
    if not (repo and revision):
        return Link("—", None)
    return Link(f"{repo}@{revision[:7]}", safe_url(f"{HUB_URL}/{repo}/tree/{revision}"))


def paper_link(entry: Entry) -> Link:
    """The model's name, linked to its training method's paper when the metadata gives an http(s) one."""
    return Link(entry.name, safe_url(entry.primary.metadata.paper))


@dataclass(frozen=True)
class Board:
    """The entries of one board, and what they all share (said once above the table, not on every row)."""

    entries: list[Entry]

    @cached_property
    def shared_subset(self) -> Examples | None:
        """The subset of the test set every entry was evaluated on, when they all share one; None otherwise.

        Cached: every row asks (``marks_subset``), and a board of a thousand entries would otherwise compare a million."""
        examples = {entry.examples for entry in self.entries}
        if len(examples) != 1:
            return None
        (only,) = examples
        return None if only.is_full else only

    @classmethod
    def apart(cls) -> "Board":
        """The view of an entry shown away from its board (a model page): a subset result is always marked."""
        return cls([])

    def marks_subset(self, entry: Entry) -> bool:
        """Whether the entry's row carries the subset mark: a subset result on a board that does not share it."""
        return not entry.examples.is_full and self.shared_subset is None


def model_marks(entry: Entry, board: Board) -> tuple[str, str]:
    """What the model column shows before and after the name: the flag mark; the subset mark and the results folder
    of an entry rendered beside the board's own."""
    before = f"{FLAG_MARK} " if entry.reliability_flags() else ""
    after = (f" {SUBSET_MARK}" if board.marks_subset(entry) else "") + (f" (from {entry.beside})" if entry.beside else "")
    return before, after


#: the columns a model page shows for each of its board entries
MODEL_PAGE_COLUMNS = ("rank", "clean % (95% CI)", "robust % (95% CI)", "reported %", "vs. reported", "clean − robust", "below the row above?",
                      "p vs. above", "examples", "flags")


def shared_subset_text(examples: Examples) -> str:
    """The note above a board whose every entry was evaluated on the same subset."""
    where = f"test[{examples.start}:{examples.stop}]"
    return (f"{SUBSET_MARK} Every model on this board was evaluated on the same {examples.count:,} of {examples.test_size:,} "
            f"test images ({where}); the intervals say how precise that makes each accuracy.")


@dataclass(frozen=True)
class Column:
    """One board column, defined once for the markdown boards and the site: header, cell, sort key, legend.

    ``main`` columns make the table a reader sees first; the others sit behind the site's details toggle
    and in the markdown board's "all columns" table. A new column is one more ``Column`` in ``BOARD_COLUMNS``.
    """

    header: str
    cell: Callable[[Entry, Board], "str | Link"]
    legend: str  # markdown (``*emphasis*``, ``code``): the site strips the marks
    sort: Callable[[Entry], float] | None = None  # numeric columns: the number behind the text
    main: bool = True
    hover: Callable[[Entry], str] | None = None  # the site's tooltip on the cell

    @property
    def numeric(self) -> bool:
        return self.sort is not None


BOARD_COLUMNS: tuple[Column, ...] = (
    Column("rank", lambda e, b: rank_text(e), "by robust accuracy, then clean accuracy, then name; "
           f"{TIE_MARK}N: not significantly different from the row above, so it shares that rank", sort=lambda e: e.rank),
    Column("model", lambda e, b: paper_link(e), f"opens the model's page (every run, its record and adversarial examples); "
           f"*paper* links its training method's paper (`metadata.paper`; standard training has none)"),
    Column("clean % (95% CI)", lambda e, b: with_interval(e.clean_accuracy, e.clean_interval()),
           "accuracy on the unperturbed test images, with its 95 % Wilson score interval", sort=lambda e: e.clean_accuracy),
    Column("robust % (95% CI)", lambda e, b: with_interval(e.robust_accuracy, e.robust_interval()),
           "the **best-known** robust accuracy, the ranking criterion: an example counts only if it is classified "
           "correctly and no verified attack of any of the model's runs broke it, so a stronger later run can only "
           "lower it", sort=lambda e: e.robust_accuracy),
    Column("reported %", lambda e, b: reported_text(e),
           "the robust accuracy published for this model under this threat model and radius (`metadata.reported`: the "
           "paper's or a third party's number); what measured it is in the tooltip and on the model page; — when none",
           sort=lambda e: -1.0 if e.reported is None else e.reported.robust_accuracy, hover=reported_hover),
    Column("vs. reported", lambda e, b: reported_gap_text(e),
           f"robbench's best-known minus the reported robust accuracy, in points; {BELOW_REPORTED_MARK}: significantly "
           "below it (exact one-sided binomial test of the best-known count on the examples evaluated against the "
           "reported proportion, p < 0.05)",
           sort=lambda e: 0.0 if e.reported is None else e.robust_accuracy - e.reported.robust_accuracy,
           hover=reported_p_hover),
    Column("clean − robust", lambda e, b: gap(e.clean_accuracy, e.robust_accuracy),
           "what robustness costs in accuracy here, in percentage points", sort=lambda e: e.clean_accuracy - e.robust_accuracy),
    Column("below the row above?", lambda e, b: below_text(e),
           "*yes* when its robust accuracy is significantly below the row above's (exact two-sided McNemar test of the "
           "per-example outcomes, p < 0.05; same examples only), *no* when not, — when not compared; the p-value is in "
           "the tooltip, the details and on the model page", hover=below_hover),
    Column("flags", lambda e, b: flags_text(e), "reasons to doubt the number and departures from the board's "
           "standard run, explained on the model page"),
    Column("attacks", lambda e, b: attacks_text(e), "each run's attacks in the order they ran, each on the survivors of "
           "the ones before, with the accuracy after it", main=False),
    Column("breaks by", lambda e, b: breaks_text(e), "each broken example credited to the attack that broke it first "
           "(board run first)", main=False),
    Column("p vs. above", lambda e, b: p_text(e), "the McNemar p-value behind *below the row above?*", main=False,
           sort=lambda e: -1.0 if e.p_vs_above is None else e.p_vs_above),
    Column("training", lambda e, b: e.primary.metadata.training, "the training method (`metadata.training`)", main=False),
    Column("venue", lambda e, b: e.primary.metadata.venue or "—", "where the model was published", main=False),
    Column("training cost", lambda e, b: training_cost_text(e.primary.metadata.training_cost),
           "epochs × training images · wall time · device, as `robbench train` measured it (— when not trained with it)",
           main=False),
    Column("extra data", lambda e, b: "yes" if e.primary.metadata.extra_data else "no",
           "trained on data beyond the dataset's training split", main=False),
    Column("architecture", lambda e, b: e.primary.architecture, "the registered architecture", main=False),
    Column("params", lambda e, b: count(e.primary.parameter_count), "parameter count", main=False,
           sort=lambda e: e.primary.parameter_count),
    Column("examples", lambda e, b: examples_text(e, mark=b.marks_subset(e)), f"test examples evaluated; {SUBSET_MARK}: a subset of the test set",
           main=False, sort=lambda e: e.examples.count),
    Column("hub", lambda e, b: hub_link(e.primary), "the Hugging Face Hub commit the evaluated weights came from "
           "(— for weights evaluated locally)", main=False),
)
MAIN_COLUMNS = tuple(c for c in BOARD_COLUMNS if c.main)
DETAIL_COLUMNS = tuple(c for c in BOARD_COLUMNS if not c.main)


def column(header: str) -> Column:
    return next(c for c in BOARD_COLUMNS if c.header == header)


def board_row(entry: Entry, board: Board | None = None) -> dict[str, "str | Link"]:
    """One board row: every column of ``BOARD_COLUMNS``, by header."""
    board = board or Board([entry])
    return {c.header: c.cell(entry, board) for c in BOARD_COLUMNS}


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


def run_row(board: Link, run: EvalRecord, urls: "tuple[str | None, str | None]") -> dict[str, "str | Link"]:
    """One evaluation behind a model's entry on ``board``; the run and its adversarial examples link to their files
    (``urls``: the record's and the examples', None where there is no link)."""
    record_url, adversarial_url = urls
    adversarial = run.adversarial_examples
    return {
        "board": board,
        "run (record JSON)": Link(run.config.run_id, record_url, local=True),
        "attacks": run_attacks_text(run),
        "robust % (this run)": percent(run.robust_accuracy),
        "seed": str(run.seed),
        "device": run.device,
        "wall time": f"{run.wall_time_s / 60:.1f} min",
        "adversarial examples (.npz)": Link(f"{adversarial.count:,}", adversarial_url or None, local=True) if adversarial else "none",
        "date (UTC)": run.timestamp[:10],
    }
