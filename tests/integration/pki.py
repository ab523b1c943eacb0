"""Building blocks for the test certificates of istio.py (the mesh CA and workloads) and
tlsenv.py (CAs and leaves for the TLS tests): what the two make the same way.

Import with ``from pki import ...`` (tests/integration is on sys.path through conftest.py).

``utc_now()``: the current UTC time, whole seconds (certificate validity bounds).
``self_signed_ca(key, name, not_before, not_after, digital_signature=False)``
    A self-signed CA certificate for <key> with subject and issuer <name>: random serial,
    BasicConstraints CA:TRUE (critical), KeyUsage keyCertSign|cRLSign (+digitalSignature when
    asked; critical), SubjectKeyIdentifier; SHA-256.
``cert_pem(cert)``: the certificate in PEM (bytes).
``write_key_and_chain(dir, name, key_pem, chain_pem, mode=None)``
    Writes ``<name>.key``, ``<name>.crt`` (the chain) and ``<name>.pem`` (chain + key, HAProxy's
    crt format) under <dir>, chmod <mode> when given; returns the three paths.
"""

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def self_signed_ca(key, name, not_before, not_after, digital_signature=False):
    """A CA certificate for <key>, subject and issuer <name> (an x509.Name)."""
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=digital_signature,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))


def write_key_and_chain(dir, name, key_pem, chain_pem, mode=None):
    """Writes <name>.key, <name>.crt (chain) and <name>.pem (chain + key, HAProxy's crt format)
    under <dir>; returns the three paths."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    paths = dir / f"{name}.key", dir / f"{name}.crt", dir / f"{name}.pem"
    paths[0].write_bytes(key_pem)
    paths[1].write_bytes(chain_pem)
    paths[2].write_bytes(chain_pem + key_pem)
    if mode is not None:
        for p in paths:
            os.chmod(p, mode)
    return paths
