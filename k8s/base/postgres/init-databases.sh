#!/bin/bash
# Runs once, when the postgres image initialises an empty data directory
# (/docker-entrypoint-initdb.d). One role and one database per service; each role may
# connect only to its own database. Passwords come from the postgres-credentials Secret.
set -euo pipefail

for service in ${SKIFF_DATABASES:-users auth notify}; do
    var="$(echo "${service}" | tr '[:lower:]-' '[:upper:]_')_DB_PASSWORD"
    password="${!var:?${var} is not set}"
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        -v service="${service}" -v password="${password}" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
    echo "init-databases: database ${service} owned by role ${service}"
done
