# Sourced by scripts/test.sh: the timeline page's browser test and bench drive
# headless Chromium through chromedriver (Debian packages chromium and
# chromium-driver). On Debian as root they are installed when missing;
# elsewhere a note says what is missing.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Chromium and chromedriver (Debian packages) for the browser test..." >&2
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || true
  fi
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || echo "note: chromium and" \
    "chromedriver are missing: the timeline browser test will fail; install the Debian packages chromium and chromium-driver" >&2
fi
