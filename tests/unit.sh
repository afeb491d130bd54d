#!/usr/bin/env bash
# tests/unit.sh: run the cmocka unit test binaries of $BUILD/tests (default build; `make unit`), counted per
# test case like tests/run.sh does. Last line: "N passed, M failed"; non-zero exit when M > 0.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BUILD=${BUILD:-build}
export UNIT_BUILDS=${UNIT_BUILDS:-$BUILD} SKIP_E2E=1
unset SKIP_UNIT
exec "$ROOT/tests/run.sh"
