"""A real OpenLDAP server (Debian's slapd) for the tests: its own slapd.conf and
database in a temporary folder, on a free loopback port, filled with test entries."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slapd:
    """``slapd`` started in the foreground (``-d 0``) and stopped by :meth:`stop`."""

    def __init__(self, folder: str, rootpw: str) -> None:
        slapd = shutil.which("slapd") or "/usr/sbin/slapd"
        os.makedirs(os.path.join(folder, "db"), exist_ok=True)
        conf = os.path.join(folder, "slapd.conf")
        with open(conf, "w") as fh:
            fh.write(CONF.format(schema=SCHEMA_DIR, modules=MODULE_DIR, dir=folder,
                                 suffix=SUFFIX, rootdn=ROOT_DN, rootpw=rootpw))
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.rootpw = rootpw
        self.log = open(os.path.join(folder, "slapd.log"), "w")
        self.process = subprocess.Popen(
            [slapd, "-f", conf, "-h", f"{self.url}/", "-d", "0"],
            stdout=self.log, stderr=subprocess.STDOUT)
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
        self.log.close()
