# Sourced by scripts/test.sh after the venv exists: makes sure the PostgreSQL
# store's tests find a server (MARVIN_TEST_POSTGRES, default: the local socket,
# connecting as the current user). On Debian as root it installs and starts one
# if needed and gives root a role; elsewhere it only says what is missing.
pgReady() {
  "$VENV/bin/python" -c "import os, psycopg; psycopg.connect(os.environ.get('MARVIN_TEST_POSTGRES') or 'postgresql:///postgres?host=/var/run/postgresql', connect_timeout=3).close()" 2>/dev/null
}
if ! pgReady; then
  if [ "$(id -u)" = 0 ] && ! command -v pg_lsclusters >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "Installing PostgreSQL (Debian package) for the PostgreSQL store's tests..." >&2
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || true
  fi
  if [ "$(id -u)" = 0 ] && command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version name _ status _; do
      [ "$status" = online ] || pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start || true
    done || true
    if command -v su >/dev/null 2>&1; then
      su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = '$(id -un)'\"" 2>/dev/null | grep -q 1 \
        || su postgres -c "createuser --superuser $(id -un)" 2>/dev/null || true
    fi
  fi
  pgReady || echo "note: no PostgreSQL server answers: the PostgreSQL store's tests will fail;" \
    "install and start postgresql, or set MARVIN_TEST_POSTGRES to a URL where databases may be created" >&2
fi
