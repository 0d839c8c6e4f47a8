"""A throwaway PostgreSQL cluster for the memory tests, standing in for Lakebase.

It needs Debian's `postgresql` package (`apt-get install postgresql`; the template
repository's scripts/install-prereqs.sh installs it). The cluster lives in a temporary
directory: initdb, then a server that listens on a Unix socket in that directory only (no TCP
port, so nothing else on the machine can reach it or clash with it), password authentication
(SCRAM), run as the `postgres` OS user when the tests run as root (PostgreSQL refuses root).

Why a socket: databricks-ai-bridge (under the memory) connects to `host=<instance
read_write_dns> port=5432 sslmode=require`. The fake workspace answers the instance lookup with
the socket directory as the host, libpq then connects to `<dir>/.s.PGSQL.5432` (SSL does not
apply to sockets), and every cluster of every test run has a directory of its own.

Roles: like a Lakebase database, DATABASE belongs to an administrator (here the superuser
`postgres`), not to the roles that use it. Each role the tests name gets LOGIN and exactly
what an app's `database`/`postgres` resource with CAN_CONNECT_AND_CREATE grants its service
principal's role: CONNECT and CREATE on the database ("Add a Lakebase resource to a Databricks
app", docs.databricks.com/dev-tools/databricks-apps/lakebase). Nothing on the schema `public`:
since PostgreSQL 15 only its owner may create objects there.
"""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

PORT = 5432  # part of the socket's name; the port databricks-ai-bridge always uses
DATABASE = "databricks_postgres"  # the database of a Lakebase instance
START_TIMEOUT_SECONDS = 60
COMMAND_TIMEOUT_SECONDS = 120
INSTALL_HINT = (
    "PostgreSQL server programs (initdb, pg_ctl) not found: install Debian's postgresql "
    "package (sudo apt-get install -y postgresql), which the memory tests start a throwaway "
    "cluster of."
)


@dataclass(frozen=True)
class Postgres:
    socket_dir: str  # the "host" the fake workspace hands out for every Lakebase instance
    superuser_password: str

    def connect(self, dbname: str = DATABASE) -> psycopg.Connection:
        return psycopg.connect(
            host=self.socket_dir,
            port=PORT,
            user="postgres",
            password=self.superuser_password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def tables(self, schema: str) -> dict[str, str]:
        """The tables of `schema`, with their owners."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = %s", (schema,)
            ).fetchall()
        return {row[0]: row[1] for row in rows}

    def schema_owner(self, schema: str) -> str | None:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                (schema,),
            ).fetchone()
        return row[0] if row else None


def server_programs() -> Path:
    """The directory of initdb and pg_ctl: on PATH, else Debian's newest version."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not found:
        raise RuntimeError(INSTALL_HINT)
    return Path(found[-1]).parent


@contextlib.contextmanager
def running_postgres(users: Sequence[str], password: str) -> Iterator[Postgres]:
    """A new cluster in which each of `users` (password `password`) may connect to DATABASE
    and create schemas in it, and nothing more."""
    programs = server_programs()
    root = Path(tempfile.mkdtemp(prefix="agent-pg-"))
    data = root / "data"
    superuser_password = os.urandom(12).hex()
    run_as_postgres = os.geteuid() == 0
    (root / "pwfile").write_text(superuser_password + "\n", encoding="utf-8")
    if run_as_postgres:
        account = pwd.getpwnam("postgres")
        for path in (root, root / "pwfile"):
            os.chown(path, account.pw_uid, account.pw_gid)

    def run(*command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if run_as_postgres else []
        result = subprocess.run(
            [*prefix, *command],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            log = root / "server.log"
            details = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{command[0]} failed:\n{result.stdout}{result.stderr}{details}")

    options = (
        f"-c listen_addresses='' -c unix_socket_directories='{root}' -c port={PORT} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    started = False
    try:
        run(
            str(programs / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={root / 'pwfile'}",
            "-E",
            "UTF8",
            "--no-sync",
        )
        run(
            str(programs / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(START_TIMEOUT_SECONDS),
            "start",
        )
        started = True
        server = Postgres(str(root), superuser_password)
        with server.connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            for user in users:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(user), sql.Literal(password)
                    )
                )
                conn.execute(
                    sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
                        sql.Identifier(DATABASE), sql.Identifier(user)
                    )
                )
        yield server
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run(str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
