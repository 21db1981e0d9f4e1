# Sourced by scripts/test.sh: the programs some tests run besides Python --
# nginx (the end-to-end test behind a real proxy) and systemd-analyze (the
# units' check). On Debian as root it installs the missing Debian packages
# (the system nginx service is not started: the test runs its own nginx);
# elsewhere it only says what is missing, and those tests will fail saying so.
missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing$missing (Debian packages) for the nginx and systemd tests..." >&2
    # policy-rc.d 101: do not start the packaged nginx service on install.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    fi
    # shellcheck disable=SC2086
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; } || true
    [ -z "$policy" ] || rm -f "$policy"
  else
    echo "note:$missing not installed: the nginx end-to-end and systemd unit tests will fail;" \
      "install the Debian package(s)$missing (a non-root developer needs nginx and systemd-analyze on PATH" \
      "or nginx in /usr/sbin)" >&2
  fi
fi
