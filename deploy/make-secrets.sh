#!/bin/sh
# The registry's database password, as the two files docker-compose.yml hands over as secrets:
# the password alone (for the postgres image) and the registry's SQLAlchemy URL with it.
set -eu
dir=$(dirname "$0")/secrets
mkdir -p "$dir"
umask 077
password=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
printf '%s' "$password" > "$dir/registry-db-password"
printf 'postgresql://registry:%s@postgres:5432/registry' "$password" > "$dir/registry-database-url"
echo "wrote $dir/registry-db-password and $dir/registry-database-url"
