"""Whether robbench may download, and the line it prints before it does.

Dataset files (``robbench.data.sources``) and hub files (``robbench.hub``) follow one switch:
``ROBBENCH_OFFLINE=1`` or huggingface_hub's ``HF_HUB_OFFLINE=1`` (``1``, ``true``, ``yes`` or ``on``).
It is read each time a download would start, not once at import as huggingface_hub reads its own,
so either variable set in a running process takes effect. Every download is announced on stderr
first (what, from where, into which folder), so a user on a slow or blocked network knows what waits.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: either one set to 1 (true, yes, on) turns every download off
OFFLINE_VARIABLES = ("ROBBENCH_OFFLINE", "HF_HUB_OFFLINE")
#: why nothing was downloaded, for error messages
DOWNLOADS_OFF = f"downloads are off ({' or '.join(OFFLINE_VARIABLES)} is set)"


def offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES)


def announce(what: str, source: str, into: "Path | str") -> None:
    """The one line on stderr before ``what`` is downloaded from ``source`` into the folder ``into``."""
    print(f"robbench: {what} is not on this machine; downloading it from {source} into {into} "
          f"(set ROBBENCH_OFFLINE=1 to never download)", file=sys.stderr, flush=True)
