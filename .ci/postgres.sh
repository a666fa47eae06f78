#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use is there: installed (apt-get), its
# cluster started, trust auth on loopback and a `test` database. Nothing is
# done when RUNBOOK_TEST_PG points the tests at another server.
set -euo pipefail
if [[ -n "${RUNBOOK_TEST_PG:-}" ]]; then
    exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z "$(ls /etc/postgresql 2>/dev/null)" ]]; then
    echo "ci: installing PostgreSQL" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
hba=/etc/postgresql/$version/main/pg_hba.conf
if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    # First match wins: loopback connections are trusted (a test server).
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    reload=1
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "ci: starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
elif [[ -n "${reload:-}" ]]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
done
pg_isready -h 127.0.0.1 -p 5432
if [[ "$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]]; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test'
fi
