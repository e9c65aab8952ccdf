#!/usr/bin/env bash
# Mutation testing of the modules that decide a number or a verdict (docs/testing.md): not a CI step.
# Needs `pip install mutmut==3.8.1` besides the test extra. mutmut reads [tool.mutmut] in pyproject.toml, copies
# robbench/ and tests/ into a mutants/ folder (git-ignored) and keeps each mutant's result there, so a rerun only
# runs the mutants whose code or tests changed.
#
# Usage:
#   scripts/mutation.sh                                  every configured module, the configured tests (mutants/)
#   scripts/mutation.sh MODULE.py TEST_FILE... [-- MUTANT_GLOB...]    (a TEST_FILE may be FILE::TEST)
#       one module against only the test files that exercise it, e.g.
#       scripts/mutation.sh robbench/verify.py tests/test_verify.py
#       It runs in mutants/by-module/NAME/ with the [tool.mutmut] table of pyproject.toml, its module list and
#       test selection replaced by the arguments, so each module keeps its own results and a run selects (and
#       instruments) only the tests that matter for it.
# Then, in the folder it ran in (the script prints it): mutmut results (the survivors), mutmut show NAME (a diff).
# MUTATION_WORKERS sets the parallel workers (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
workers="${MUTATION_WORKERS:-2}"
# one torch thread per worker: the workers are the parallelism
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

if [[ $# -eq 0 || $1 != *.py ]]; then
    # the test subprocesses (python -m robbench ...) import the mutated copy too
    export PYTHONPATH="$repo/mutants${PYTHONPATH:+:$PYTHONPATH}"
    exec mutmut run --max-children "$workers" "$@"
fi

module=$1
shift
tests=()
while [[ $# -gt 0 && $1 != -- ]]; do tests+=("$1"); shift; done
[[ $# -gt 0 ]] && shift  # the --; what follows are mutant globs
[[ -f $module ]] || { echo "no module $module: give a path such as robbench/verify.py" >&2; exit 2; }
[[ ${#tests[@]} -gt 0 ]] || { echo "no test files for $module: give the test files that exercise it" >&2; exit 2; }
for test in "${tests[@]}"; do
    [[ -f ${test%%::*} ]] || { echo "no test file ${test%%::*}" >&2; exit 2; }  # a file, or a file::test id
done

name=$(basename "${module%.py}")
[[ $module == */attacks/* ]] && name="attacks-$name"
[[ $module == */leaderboard/* ]] && name="leaderboard-$name"
work="$repo/mutants/by-module/$name"
mkdir -p "$work"
python3 - "$repo/pyproject.toml" "$work/pyproject.toml" "$module" "${tests[@]}" <<'EOF'
"""Writes pyproject.toml (and links to the repository) with [tool.mutmut]'s only_mutate and test selection replaced (that table is the file's last)."""
import json
import re
import sys
import tomllib
from pathlib import Path

source, target, module, *tests = sys.argv[1:]
text = Path(source).read_text()
head, table = text.split("\n[tool.mutmut]\n")
for key in ("only_mutate", "pytest_add_cli_args_test_selection"):
    table = re.sub(rf"(?ms)^{key} = \[.*?^\]\n|^{key} = \[.*?\]\n", "", table)
table += f"only_mutate = {json.dumps([module])}\npytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
written = head + "\n[tool.mutmut]\n" + table
config = tomllib.loads(written)["tool"]["mutmut"]
assert config["only_mutate"] == [module] and config["pytest_add_cli_args_test_selection"] == tests, config
if not Path(target).exists() or Path(target).read_text() != written:  # an unchanged file keeps mutmut's cache
    Path(target).write_text(written)
# the work folder sees the repository's code, tests and what the tests read through links
for name in [*config["source_paths"], "tests", *config.get("also_copy", [])]:
    link = Path(target).parent / name
    if not link.is_symlink():
        link.symlink_to(Path(source).parent.resolve() / name)
EOF
cd "$work"
mkdir -p mutants  # on the path before the interpreter starts, or the tests there cannot be imported on a first run
echo "mutating $module against ${tests[*]} in $work"
export PYTHONPATH="$work/mutants${PYTHONPATH:+:$PYTHONPATH}"
exec mutmut run --max-children "$workers" "$@"
