# Sourced by the scripts: makes ./.venv (or $MARVIN_VENV) and installs Marvin into it.
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${MARVIN_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    echo "python3 -m venv failed: on Debian install it with 'apt-get install python3-venv'" >&2
    rm -rf "$VENV"; exit 1
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
# lxml and xmlsec only from wheels: both must carry the same libxml2.
# Editable: setup.cfg's package_dir puts the tree on sys.path, so twistd's
# plugin scan sees twisted/plugins. The tests need every extra.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --only-binary=lxml,xmlsec \
  -e '.[controller,postgres,test]'
"$VENV/bin/python" -c "import xmlsec, lxml.etree as e; assert xmlsec.get_libxml_version() == e.LIBXML_VERSION, 'lxml/xmlsec libxml2 mismatch'"
