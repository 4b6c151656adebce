#!/usr/bin/env bash
# Run Optuna's own storage tests (journal mode) against bitsmith's journal storage.
#
# Downloads the source distribution of the Optuna version installed in the venv
# (only the sdist ships tests/), and runs its storage, study and trial tests with
# the plugin in tests/optuna_conformance/, which makes mode "journal" use
# bitsmith.search.storage.open_storage. Exits with pytest's status.
#
#   scripts/optuna-conformance.sh                 bitsmith's journal storage
#   scripts/optuna-conformance.sh --stock-journal Optuna's own JournalStorage (the baseline)
#   scripts/optuna-conformance.sh -x -k param     any further pytest arguments
#
# PYTHON: the interpreter (default .venv/bin/python). OPTUNA_SDIST_DIR: where to keep the
# download (default: a temporary directory, removed at exit).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-.venv/bin/python}"
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"  # absolute: pytest runs elsewhere

version="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("optuna"))')"
work="$(mktemp -d "${TMPDIR:-/tmp}/optuna-conformance.XXXXXX")"
trap 'rm -rf "$work"' EXIT
sdist_dir="${OPTUNA_SDIST_DIR:-$work/download}"
mkdir -p "$sdist_dir"

archive="$(ls "$sdist_dir"/optuna-"$version".tar.gz 2>/dev/null || true)"
if [[ -z "$archive" ]]; then
    echo "downloading the Optuna $version source distribution" >&2
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "optuna==$version" -d "$sdist_dir" >&2
    archive="$sdist_dir/optuna-$version.tar.gz"
fi
tar -xzf "$archive" -C "$work"
src="$work/optuna-$version"
# The tests must import the installed Optuna (the one bitsmith runs on), not the copy in the sdist.
rm -rf "$src/optuna"

cd "$src"
echo "Optuna $version tests from $archive, python $PYTHON" >&2
status=0
PYTHONPATH="$root/tests/optuna_conformance${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" -m pytest -p bitsmith_journal_plugin -p no:cacheprovider --color=no -rfEs \
    tests/storages_tests/test_storages.py tests/study_tests/test_study.py tests/trial_tests/ \
    "$@" || status=$?
exit "$status"
