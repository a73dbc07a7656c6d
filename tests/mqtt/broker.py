"""A real Mosquitto broker for the tests: generated config, free ports, persistence in a temp dir.

One process can serve several listeners (``per_listener_settings``): anonymous, password-protected,
TLS, and TLS requiring a client certificate. Certificates are generated with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
USER, PASSWORD = "candlecast", "s3cret-pass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, all signed by the CA."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "candlecast test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(name: str, usage: x509.ObjectIdentifier, alt: list[x509.GeneralName]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path

    server = issue(
        "server",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = issue("client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return Certificates(ca_path, *server, *client)


@dataclass
class Listener:
    port: int
    password_file: Path | None = None
    certificates: Certificates | None = None
    require_client_certificate: bool = False

    def config(self) -> list[str]:
        lines = [f"listener {self.port} 127.0.0.1", f"allow_anonymous {str(self.password_file is None).lower()}"]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.certificates is not None:
            lines += [
                f"cafile {self.certificates.ca}",
                f"certfile {self.certificates.server_cert}",
                f"keyfile {self.certificates.server_key}",
            ]
        if self.require_client_certificate:
            lines.append("require_certificate true")
        return lines


@dataclass
class Mosquitto:
    """A broker process; ``stop`` and ``start`` again keep its ports and its persisted sessions."""

    directory: Path
    listeners: list[Listener]
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def port(self) -> int:
        return self.listeners[0].port

    def write_config(self) -> Path:
        lines = [
            "per_listener_settings true",
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {self.directory}/",
            f"log_dest file {self.directory / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
        ]
        for listener in self.listeners:
            lines += listener.config()
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Mosquitto:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        for listener in self.listeners:
            while not _accepts(listener.port):
                if self.process.poll() is not None:
                    error = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"mosquitto exited: {error}{self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {listener.port}: {self.log()}")
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions and queued messages, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text() if path.exists() else ""


def password_file(directory: Path) -> Path:
    path = directory / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), USER, PASSWORD], check=True, capture_output=True)
    return path


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
