"""The README's reference-results tables are generated from the committed records."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_tables_match_the_committed_records():
    assert _script().main(["--check"]) == 0, "run python scripts/readme_results.py"


def test_a_stale_table_is_reported(tmp_path, capsys):
    script = _script()
    (tmp_path / "results").mkdir()
    settled = f"{script.SETTLED_START}\n| stale |\n{script.SETTLED_END}\n"
    (tmp_path / "README.md").write_text(f"intro\n{script.START}\n| stale |\n{script.END}\n{settled}rest\n")
    assert script.main(["--check", "--root", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert script.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == (
        f"intro\n{script.START}\n\n{script.END}\n"
        f"{script.SETTLED_START}\nNo escalation runs are committed yet.\n{script.SETTLED_END}\nrest\n"
    )


def test_a_readme_without_the_settled_flags_markers_is_refused(tmp_path):
    script = _script()
    (tmp_path / "results").mkdir()
    (tmp_path / "README.md").write_text(f"{script.START}\n{script.END}\n")
    try:
        script.main(["--check", "--root", str(tmp_path)])
    except SystemExit as stop:
        assert "settled-flags" in str(stop)
    else:
        raise AssertionError("a README without the settled-flags markers was accepted")
