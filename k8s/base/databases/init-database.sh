#!/bin/bash
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d): the service's role and its database, owned by that role.
# The role is not a superuser; only it may connect to the database. SKIFF_DATABASE names both
# (users, auth or notify); SKIFF_DATABASE_PASSWORD comes from the <service>-db-credentials Secret.
set -euo pipefail

service="${SKIFF_DATABASE:?SKIFF_DATABASE is not set}"
password="${SKIFF_DATABASE_PASSWORD:?SKIFF_DATABASE_PASSWORD is not set}"
psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v service="${service}" -v password="${password}" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
echo "init-database: database ${service} owned by role ${service}"
