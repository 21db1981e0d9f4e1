"""
C{marvin}: the command line for experimenters and admins.

It speaks only the REST API (C{docs/rest.md}) over HTTPS with the user's
client certificate, so it imports nothing of the controller (an
import-linter contract in C{setup.cfg} keeps it so) and needs only the
standard library, PyYAML and python-dateutil.
"""
