#!/usr/bin/env bash
# Mutation testing of the modules that decide a number or a verdict (docs/testing.md): not a CI step.
# Needs `pip install mutmut==3.8.1` besides the test extra. mutmut reads [tool.mutmut] in pyproject.toml, copies
# robbench/ and tests/ into mutants/ (git-ignored) and keeps each mutant's result there, so a rerun only runs the
# mutants whose code or tests changed.
# Usage: scripts/mutation.sh [MUTANT_GLOB...]   e.g. scripts/mutation.sh 'robbench.stats.*'
# Then: mutmut results (the survivors), mutmut show NAME (a mutant's diff); docs/testing.md keeps the scores.
set -euo pipefail
cd "$(dirname "$0")/.."
# the test subprocesses (python -m robbench ...) import the mutated copy too
export PYTHONPATH="$PWD/mutants${PYTHONPATH:+:$PYTHONPATH}"
exec mutmut run --max-children "${MUTATION_WORKERS:-2}" "$@"
