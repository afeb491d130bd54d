#!/usr/bin/env bash
# The fault suite, short form (under ~90 s): worker SIGKILL every 2 s, two workers, a FastCGI process killed
# mid-request, Redis FLUSHALL / kill -9 / restore of an older snapshot, PostgreSQL fast stop and crashes, each
# under a load of messages; every run prints what was offered, injected, lost, duplicated and the 5xx seen, and
# passes only with 0 lost, 0 duplicated and no 500. `make faults` runs the full form (FAULTS=full) under
# lighttpd and nginx. See tests/faults.sh.
# Deployments it runs under: FAULTS_DEPLOYMENTS (default "lighttpd nginx"; the others skip it).
set -euo pipefail
[[ " ${FAULTS_DEPLOYMENTS:-lighttpd nginx} " == *" ${DEPLOYMENT:-lighttpd} "* ]] || exit 0
source "$(dirname "${BASH_SOURCE[0]}")/../faults.sh"

faults_run_all
