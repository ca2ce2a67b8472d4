#!/usr/bin/env bash
# Runs the test suite (sets the project up first when .venv/ is missing). Extra arguments go to pytest.
# Every test runs: a missing service or tool fails its tests with what to do; the only optional part is PostgreSQL
# for a developer without it (HOTLINE_TEST_ALLOW_SKIP_PG=1, README "Tests"). `-rs` lists any skip at the end.
set -uo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/hotline ] || bash setup.sh || exit 1
.venv/bin/python -m pytest -q -rs -p no:cacheprovider "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "test.sh: no test was collected or selected (check the paths, -k and -m given: $*)" >&2
fi
exit "$rc"
