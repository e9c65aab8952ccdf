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
    (tmp_path / "README.md").write_text(f"intro\n{script.START}\n| stale |\n{script.END}\nrest\n")
    assert script.main(["--check", "--root", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert script.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == f"intro\n{script.START}\n\n{script.END}\nrest\n"
