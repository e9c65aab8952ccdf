"""How robbench writes a number for people: one format shared by the console, the reports and the leaderboards.

Kept free of heavy imports (no torch, no scipy) so the CLI and the page renderers can use it cheaply.
"""

from __future__ import annotations


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals (``0.725`` → ``72.50``); an em dash for none."""
    return "—" if value is None else f"{100 * value:.2f}"
