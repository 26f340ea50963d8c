"""A real OpenLDAP server (Debian's slapd) for the tests: its own slapd.conf and
database in a temporary folder, on a free loopback port, filled with test entries.

With ``tls=(cert_file, key_file)`` it also speaks TLS: StartTLS on ``url`` and LDAPS on
``ldaps_url``. :func:`make_ca` and :func:`issue_cert` make a test CA and a server
certificate it signs (for 127.0.0.1 and localhost)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ldap3 import Connection, Server

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"

CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
modulepath {modules}
moduleload back_mdb
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
{tls}

database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db

access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to dn.subtree="ou=services,{suffix}"
    by self read
    by anonymous auth
    by * none
access to *
    by users read
    by anonymous auth
    by * none
"""


def make_ca(folder: str, name: str) -> tuple[str, object, object]:
    """A self-signed CA: (PEM file, certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .sign(key, hashes.SHA256()))
    path = os.path.join(folder, f"{name}.pem")
    with open(path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def issue_cert(folder: str, ca_cert, ca_key, name: str = "slapd") -> tuple[str, str]:
    """A server certificate for 127.0.0.1/localhost signed by the CA: (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file = os.path.join(folder, f"{name}-cert.pem")
    key_file = os.path.join(folder, f"{name}-key.pem")
    with open(cert_file, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_file, key_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slapd:
    """``slapd`` started in the foreground (``-d 0``) and stopped by :meth:`stop`."""

    def __init__(self, folder: str, rootpw: str,
                 tls: tuple[str, str] | None = None) -> None:
        slapd = shutil.which("slapd") or "/usr/sbin/slapd"
        os.makedirs(os.path.join(folder, "db"), exist_ok=True)
        conf = os.path.join(folder, "slapd.conf")
        tls_conf = f"TLSCertificateFile {tls[0]}\nTLSCertificateKeyFile {tls[1]}\n" \
            if tls else ""
        with open(conf, "w") as fh:
            fh.write(CONF.format(schema=SCHEMA_DIR, modules=MODULE_DIR, dir=folder,
                                 suffix=SUFFIX, rootdn=ROOT_DN, rootpw=rootpw,
                                 tls=tls_conf))
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        urls = [f"{self.url}/"]
        self.ldaps_url = None
        if tls:
            self.ldaps_port = free_port()
            self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}"
            urls.append(f"{self.ldaps_url}/")
        self.rootpw = rootpw
        with open(os.path.join(folder, "slapd.log"), "w") as log:
            self.process = subprocess.Popen(
                [slapd, "-f", conf, "-h", " ".join(urls), "-d", "0"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}; see "
                                   f"{folder}/slapd.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("slapd did not start listening") from None
                time.sleep(0.05)

    def admin(self) -> Connection:
        return Connection(Server(self.url), ROOT_DN, self.rootpw, auto_bind=True,
                          raise_exceptions=True)

    def seed(self, people: dict[str, dict], admins: list[str], service_pw: str) -> None:
        """ou=people with the given users (uid -> attributes incl. userPassword), a
        service account, and cn=apicrud-admins listing ``admins``."""
        with self.admin() as conn:
            conn.add(SUFFIX, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
            for ou in ("people", "groups", "services"):
                conn.add(f"ou={ou},{SUFFIX}", ["organizationalUnit"], {"ou": ou})
            conn.add(f"cn=apicrud,ou=services,{SUFFIX}", ["organizationalRole",
                                                          "simpleSecurityObject"],
                     {"cn": "apicrud", "userPassword": service_pw})
            for uid, attrs in people.items():
                conn.add(f"uid={uid},ou=people,{SUFFIX}", ["inetOrgPerson"],
                         {"uid": uid, "sn": uid, "cn": attrs.get("cn", uid), **attrs})
            conn.add(f"cn=apicrud-admins,ou=groups,{SUFFIX}", ["groupOfNames"],
                     {"cn": "apicrud-admins",
                      # groupOfNames needs a member: the root DN stays one
                      "member": [ROOT_DN, *(f"uid={u},ou=people,{SUFFIX}" for u in admins)]})

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
