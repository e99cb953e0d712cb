"""
Certificates for TLS tests, generated with cryptography: a CA, a server
certificate for 127.0.0.1/localhost, client certificates (valid, expired,
revoked, signed by an untrusted CA) and a CRL, written as PEM files.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_NOW = datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuerKey: ec.EllipticCurvePrivateKey,
    ca: bool = False,
    days: tuple[int, int] = (-1, 365),
    server: bool = False,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW + datetime.timedelta(days=days[0]))
        .not_valid_after(_NOW + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuerKey, hashes.SHA256())


def _write(path: str, *parts: bytes) -> str:
    with open(path, "wb") as f:
        for part in parts:
            f.write(part)
    return path


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _keyPem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


class Certificates:
    """
    PEM files in C{directory}: C{ca}, C{server}/C{serverKey}, and client
    pairs C{client} (CN C{alice}), C{expired}, C{revoked} (CN C{mallory}),
    C{untrusted} (another CA); C{crl} revokes C{revoked}.
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        caKey = _key()
        caName = _name("vernemq test CA")
        caCert = _cert("vernemq test CA", caKey, caName, caKey, ca=True, days=(-2, 3650))
        self.ca = _write(self._p("ca.pem"), _pem(caCert))
        serverKey = _key()
        self.server = _write(
            self._p("server.pem"),
            _pem(_cert("localhost", serverKey, caName, caKey, server=True)),
        )
        self.serverKey = _write(self._p("server.key"), _keyPem(serverKey))
        self.client, self.clientKey = self._client("alice", caName, caKey)
        self.expired, self.expiredKey = self._client("bob", caName, caKey, days=(-30, -1))
        revokedCert, self.revokedKey = self._clientCert("mallory", caName, caKey)
        self.revoked = _write(self._p("mallory.pem"), _pem(revokedCert))
        otherKey = _key()
        otherName = _name("someone else's CA")
        self.untrusted, self.untrustedKey = self._client("eve", otherName, otherKey)
        revokedEntry = (
            x509.RevokedCertificateBuilder()
            .serial_number(revokedCert.serial_number)
            .revocation_date(_NOW - datetime.timedelta(hours=1))
            .build()
        )
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(caName)
            .last_update(_NOW - datetime.timedelta(hours=1))
            .next_update(_NOW + datetime.timedelta(days=30))
            .add_revoked_certificate(revokedEntry)
            .sign(caKey, hashes.SHA256())
        )
        self.crl = _write(self._p("crl.pem"), crl.public_bytes(serialization.Encoding.PEM))

    def _p(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _clientCert(
        self, cn: str, issuer: x509.Name, issuerKey: ec.EllipticCurvePrivateKey,
        days: tuple[int, int] = (-1, 365),
    ) -> tuple[x509.Certificate, str]:
        key = _key()
        cert = _cert(cn, key, issuer, issuerKey, days=days)
        return cert, _write(self._p(f"{cn}.key"), _keyPem(key))

    def _client(
        self, cn: str, issuer: x509.Name, issuerKey: ec.EllipticCurvePrivateKey,
        days: tuple[int, int] = (-1, 365),
    ) -> tuple[str, str]:
        cert, key = self._clientCert(cn, issuer, issuerKey, days)
        return _write(self._p(f"{cn}.pem"), _pem(cert)), key

    def listenerLines(self, key: str, **extra: str) -> list[str]:
        """Config lines for a TLS listener C{key} with these files."""
        lines = [
            f"{key}.cafile = {self.ca}",
            f"{key}.certfile = {self.server}",
            f"{key}.keyfile = {self.serverKey}",
        ]
        lines += [f"{key}.{name} = {value}" for name, value in extra.items()]
        return lines
