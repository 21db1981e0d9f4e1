# -*- test-case-name: tests.test_allocation_ssh -*-
"""
Per-task SSH key pairs for the legacy C{ssh} option: the node gets the private
key (a hidden C{_ssh.private} deployment option) to open a tunnel; the tunnel
server fetches the public keys of live tasks from C{/backend/pubkeys}.

Ed25519 rather than the legacy 2048-bit RSA: a booking may need thousands of
pairs, and Ed25519 makes one in microseconds instead of tens of milliseconds.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def newKeyPair() -> tuple[str, str]:
    """
    A fresh key pair: (private key in OpenSSH PEM form, public key in OpenSSH form).
    """
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    return private, public
