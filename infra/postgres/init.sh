#!/bin/bash
# Runs once, when the PostgreSQL volume is empty: one server, two databases with their own owners.
# Linli's schema is then created by the `migrate` service (`linli db upgrade`); Prefect's by its server.
set -euo pipefail

: "${POSTGRES_LINLI_PASSWORD:?set POSTGRES_LINLI_PASSWORD in infra/.env}"
: "${POSTGRES_PREFECT_PASSWORD:?set POSTGRES_PREFECT_PASSWORD in infra/.env}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v linli_pw="$POSTGRES_LINLI_PASSWORD" -v prefect_pw="$POSTGRES_PREFECT_PASSWORD" <<'SQL'
CREATE ROLE linli LOGIN PASSWORD :'linli_pw';
CREATE DATABASE linli OWNER linli;
CREATE ROLE prefect LOGIN PASSWORD :'prefect_pw';
CREATE DATABASE prefect OWNER prefect;
SQL
