"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp dir, on a free loopback
port, with its unix socket inside the temp dir. Nothing outside the temp dir is touched.

Needs the server binaries (Debian: ``apt-get install postgresql-15``; any version found under
/usr/lib/postgresql/*/bin or on PATH works). initdb refuses to run as root, so as root the
server runs as the ``postgres`` user (or ``nobody``) through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "brazecfg"
PASSWORD = "pg-test-secret"


class Unavailable(Exception):
    """PostgreSQL cannot be started here; the message says why (tests skip with it)."""


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: newest /usr/lib/postgresql/N/bin, else PATH."""
    found = []
    for path in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        version = Path(path).parent.parent.name
        found.append((int(version) if version.isdigit() else 0, Path(path).parent))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    base: Path
    bindir: Path
    port: int
    run_as: str | None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        full = list(cmd)
        if self.run_as:
            full = ["runuser", "-u", self.run_as, "--", *full]
        proc = subprocess.run(full, capture_output=True, text=True, timeout=120, cwd=self.base)
        if proc.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise Unavailable(f"{Path(cmd[0]).name} failed ({proc.returncode}): "
                              f"{proc.stderr.strip() or proc.stdout.strip()} {tail}".strip())

    def start(self) -> None:
        data, sock = self.base / "data", self.base / "sock"
        sock.mkdir()
        pwfile = self.base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.base, sock, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", USER,
                  f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l",
                  str(self.base / "server.log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c full_page_writes=off -c synchronous_commit=off", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"),
                      "-m", "immediate", "-w", "stop")
        except (Unavailable, subprocess.TimeoutExpired):
            pass
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A running server (stop() it), or Unavailable with the reason."""
    bindir = find_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                          "install postgresql-15 to run these tests")
    run_as: str | None = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            run_as = name
            break
        if run_as is None:
            raise Unavailable("running as root and no 'postgres' or 'nobody' user to run initdb")
        if shutil.which("runuser") is None:
            raise Unavailable("running as root and runuser (util-linux) is not installed")
    base = Path(tempfile.mkdtemp(prefix="brazecfg-pg-"))
    server = PostgresServer(base, bindir, free_port(), run_as)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
