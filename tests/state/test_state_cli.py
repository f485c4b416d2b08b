"""The state through the CLI: shared backends (two checkouts standing in for two CI runners),
the lease between two processes, migrations of today's ledgers, a crash's hot journal, and
the `brazecfg state` commands. Real parts: SQLite/DuckDB files, a PostgreSQL server
(tests/pg.py), the emulator as an HTTP server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.state.ledger import Ledger
from brazecfg.state.packing import layout_key
from tests.delivery_project import Generated, make_project
from tests.helpers import ROOT, cli, emulator_get

DEST = "braze_users"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", "http://127.0.0.1:9")  # the emulator sets its own
    # Two checkouts share one state, so they share the hash key, as CI secrets would.
    monkeypatch.setenv("BRAZECFG_HASH_KEY", "shared-hash-key-0123456789abcdef")


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    e = Emulator(EmulatorConfig(port=0, latency_ms=0)).start()
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", e.url)
    yield e
    e.stop()


def checkout(tmp: Path, name: str, state: dict[str, Any] | None,
             extra_app: dict[str, Any] | None = None, n: int = 40) -> Generated:
    gen = make_project(tmp / name, n)
    if state is not None:
        (gen.root / "brazecfg.yml").write_text(json.dumps({"name": "delivery", "state": state}))
    if extra_app is not None:
        (gen.root / "apps" / "statewh.yml").write_text(json.dumps(extra_app))
    return gen


def apply(gen: Generated, *extra: str) -> Any:
    return cli("apply", str(gen.root), "--auto-approve", *extra)


def logged(emu: Emulator) -> list[dict[str, Any]]:
    """The emulator's request log (Braze API calls; its own /_emulator routes are not logged)."""
    entries: list[dict[str, Any]] = emulator_get(emu.url, "requests")["requests"]
    assert all(not str(e["path"]).startswith("/_emulator") for e in entries)
    return entries


def n_requests(emu: Emulator) -> int:
    return len(logged(emu))


SHARED = ["postgres", "warehouse-duckdb", "warehouse-postgres"]


@pytest.mark.parametrize("kind", SHARED)
def test_two_checkouts_share_one_state_and_nothing_is_sent_twice(
        kind: str, tmp_path: Path, emu: Emulator, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    extra = None
    if kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("BRAZECFG_STATE_URL", url)
        state: dict[str, Any] = {"backend": "postgres", "url": "{{ env('BRAZECFG_STATE_URL') }}",
                                 "schema": f"s_{uuid.uuid4().hex[:8]}"}
    elif kind == "warehouse-duckdb":
        import duckdb

        shared = tmp_path / "shared.duckdb"
        duckdb.connect(str(shared)).close()
        extra = {"kind": "app", "name": "statewh", "type": "duckdb",
                 "options": {"path": str(shared)}}
        state = {"backend": "warehouse", "app": "statewh"}
    else:
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("BRAZECFG_TEST_STATE_PG", url)
        extra = {"kind": "app", "name": "statewh", "type": "postgres",
                 "options": {"url": "{{ env('BRAZECFG_TEST_STATE_PG') }}"}}
        state = {"backend": "warehouse", "app": "statewh", "schema": f"w_{uuid.uuid4().hex[:8]}"}
    one = checkout(tmp_path, "one", state, extra)
    two = checkout(tmp_path, "two", state, extra)

    out = apply(one)
    assert out.exit_code == 0, out.output
    assert len(emu.store.users()) == 40 and n_requests(emu) > 0
    assert not (one.root / ".brazecfg" / "ledger.sqlite").exists()  # the state is elsewhere
    # The second runner has the committed lockfile, no local state.
    shutil.copy(one.root / "brazecfg.lock.json", two.root / "brazecfg.lock.json")
    sent = n_requests(emu)
    out = cli("plan", str(two.root))
    assert out.exit_code == 0, out.output
    assert "No changes." in out.output
    out = apply(two)
    assert out.exit_code == 0, out.output
    assert n_requests(emu) == sent  # not one request: no profile, no event sent twice
    events = [e for u in emu.store.users() for e in u["events"]]
    assert len(events) == len(one.events)
    if kind != "warehouse-duckdb":
        assert os.environ.get("BRAZECFG_STATE_URL", "x").split("@")[0] not in out.output


HOLDER = """
import sys, time
from brazecfg.config.loader import load_project
from brazecfg.state.store import locked_state
with locked_state(load_project(sys.argv[1]), "brazecfg apply"):
    print("locked", flush=True)
    time.sleep(600)
"""


def hold(root: Path) -> subprocess.Popen[str]:
    """A real process holding the state's lease (as a running apply would)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    proc.stdout.close()
    return proc


def _lock_id(output: str) -> str:
    return output.split("lock id ")[1].split(",")[0]


@pytest.mark.parametrize("kind", ["local", "postgres"])
def test_a_second_apply_is_refused_then_kill_9_frees_after_the_ttl(
        kind: str, tmp_path: Path, emu: Emulator, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    state: dict[str, Any] = {"lock_ttl": 3}
    if kind == "postgres":
        monkeypatch.setenv("BRAZECFG_STATE_URL", request.getfixturevalue("postgres_url"))
        state.update(backend="postgres", url="{{ env('BRAZECFG_STATE_URL') }}",
                     schema=f"l_{uuid.uuid4().hex[:8]}")
    one = checkout(tmp_path, "one", state)
    two = checkout(tmp_path, "two", state) if kind == "postgres" else one
    holder = hold(one.root)
    try:
        out = apply(two)
        assert out.exit_code == 1, out.output
        import getpass
        import socket

        for part in (getpass.getuser(), socket.gethostname(), f"pid {holder.pid}",
                     "brazecfg apply", "state unlock"):
            assert part in out.output, (part, out.output)
        assert " for " in out.output and "s (lock id" in out.output  # the age
        assert n_requests(emu) == 0
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        out = apply(two)  # the lease outlives its holder until the TTL
        assert out.exit_code == 1 and f"pid {holder.pid}" in out.output, out.output
        time.sleep(3.5)
        out = apply(two)
        assert out.exit_code == 0, out.output
        assert len(emu.store.users()) == 40
    finally:
        if holder.poll() is None:
            holder.kill()


def test_state_unlock_frees_at_once_and_lock_timeout_waits(
        tmp_path: Path, emu: Emulator) -> None:
    gen = checkout(tmp_path, "p", {"lock_ttl": 30})
    holder = hold(gen.root)
    try:
        out = apply(gen)
        assert out.exit_code == 1
        lock_id = _lock_id(out.output)
        listed = cli("state", "list", "-p", str(gen.root))
        assert lock_id in listed.output and f"pid {holder.pid}" in listed.output
        assert cli("state", "unlock", "wrong", "-p", str(gen.root)).exit_code == 1
        out = cli("state", "unlock", lock_id, "-p", str(gen.root))
        assert out.exit_code == 0 and f"pid {holder.pid}" in out.output, out.output
        assert apply(gen).exit_code == 0
    finally:
        holder.kill()
        holder.wait()
    # --lock-timeout: waits (and says for whom) until the holder lets go.
    holder = hold(gen.root)
    try:
        import threading

        threading.Timer(1.5, holder.terminate).start()  # SIGTERM: exits without releasing
        gen.set_score([1], 99)
        out = apply(gen, "--lock-timeout", "2s")
        assert out.exit_code == 1 and "after waiting 2s" in out.output, out.output
        out = cli("state", "unlock", _lock_id(out.output), "-p", str(gen.root))
        assert out.exit_code == 0
        assert apply(gen, "--lock-timeout", "10s").exit_code == 0
    finally:
        holder.kill()
        holder.wait()


def test_an_apply_whose_lock_was_lost_stops_at_its_next_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder force-unlocked mid-run: the next commit fails, what was confirmed stays."""
    emu = Emulator(EmulatorConfig(port=0, latency_ms=150)).start()
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
    proc: subprocess.Popen[str] | None = None
    try:
        gen = checkout(tmp_path, "p", {"lock_ttl": 30}, n=3000)
        # Two workers: 40 batches at 150 ms take about 3 s, time enough to unlock mid-run.
        braze = gen.root / "apps" / "braze.yml"
        app = json.loads(braze.read_text())
        app["options"]["concurrency"] = 2
        braze.write_text(json.dumps(app))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BRAZE_REST_ENDPOINT": emu.url,
               "NO_COLOR": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "brazecfg", "apply", str(gen.root),
                                 "--auto-approve"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        ledger = gen.root / ".brazecfg" / "ledger.sqlite"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if ledger.exists():
                with Ledger(ledger, writable=False) as led:
                    if led.count(DEST) > 0 and led.lock_info() is not None:
                        lock_id = led.lock_info().lock_id  # type: ignore[union-attr]
                        break
            time.sleep(0.1)
        else:
            raise AssertionError("apply never committed")
        assert cli("state", "unlock", lock_id, "-p", str(gen.root)).exit_code == 0
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert "the state lock was lost" in err and "confirmed before is kept" in err, err
        with Ledger(ledger, writable=False) as led:
            kept = led.count(DEST)
        assert 0 < kept < 3000
        held = {u["external_id"] for u in emu.store.users()}
        with Ledger(ledger, writable=False) as led:
            assert {r.external_id for r in led.stream(DEST)} <= held
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        emu.stop()


# -- today's ledgers, crashes, newer states -----------------------------------------------------

V1_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    destination TEXT NOT NULL, external_id TEXT NOT NULL, fields TEXT NOT NULL,
    groups TEXT NOT NULL, confirmed_at TEXT NOT NULL,
    PRIMARY KEY (destination, external_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    destination TEXT NOT NULL, stream TEXT NOT NULL, row_key TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT, at TEXT NOT NULL,
    PRIMARY KEY (destination, stream, row_key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    destination TEXT NOT NULL, external_id TEXT NOT NULL, reason TEXT NOT NULL,
    failed_at TEXT NOT NULL, PRIMARY KEY (destination, external_id)) WITHOUT ROWID;
"""


def _json_records(ledger: Path) -> list[tuple[object, ...]]:
    """The records as v1-v3 stored them: destination names, field hashes and groups as JSON
    text, a confirmed_at, no row hash (read through the Ledger: v4 numbers them)."""
    with Ledger(ledger, writable=False) as led:
        return [(d, r.external_id, json.dumps(r.fields, sort_keys=True, separators=(",", ":")),
                 json.dumps(sorted(r.groups), separators=(",", ":")), "2026-12-01T10:00:00Z")
                for d in led.destinations() for r in led.stream(d)]


def _to_v1(ledger: Path) -> None:
    """Rewrite a ledger as brazecfg 0.1 wrote it (its SQL, version 1, no v2 tables)."""
    records = _json_records(ledger)
    con = sqlite3.connect(ledger)
    rows = {t: con.execute(f"SELECT * FROM {t}").fetchall()
            for t in ("meta", "events", "failures")}
    rows["records"] = records
    rows["meta"] = [(k, v) for k, v in rows["meta"] if not layout_key(k)]
    con.close()
    ledger.unlink()
    con = sqlite3.connect(ledger)
    con.executescript(V1_SQL)
    with con:
        for t, values in rows.items():
            if t == "meta":
                values = [(k, v) for k, v in values if k != "state_id"]
            for v in values:
                if t == "events":
                    v = v[:6]  # v1 had no user, name, weight, time
                con.execute(f"INSERT INTO {t} VALUES ({','.join('?' * len(v))})", v)
        con.execute("UPDATE meta SET value = '1' WHERE key = 'version'")
    con.close()


def test_a_v1_ledger_is_read_by_plan_and_migrated_in_place_by_apply(
        tmp_path: Path, emu: Emulator) -> None:
    gen = checkout(tmp_path, "p", None)
    assert apply(gen).exit_code == 0
    ledger = gen.root / ".brazecfg" / "ledger.sqlite"
    _to_v1(ledger)
    sent = n_requests(emu)
    out = cli("plan", str(gen.root))
    assert out.exit_code == 0 and "No changes." in out.output, out.output
    with Ledger(ledger, writable=False) as led:
        assert led.schema_version == 1  # plan migrated nothing
    assert apply(gen).exit_code == 0
    assert n_requests(emu) == sent
    with Ledger(ledger, writable=False) as led:
        assert led.schema_version == 4 and led.identity.state_id is not None
        assert led.count(DEST) == 40


def test_a_hot_journal_left_by_a_crash_is_read_correctly(tmp_path: Path, emu: Emulator) -> None:
    gen = checkout(tmp_path, "p", None)
    assert apply(gen).exit_code == 0
    ledger = gen.root / ".brazecfg" / "ledger.sqlite"
    # A writer dies (kill -9) mid-transaction after spilling pages into the file.
    crash = (f"import sqlite3, os\ncon = sqlite3.connect({str(ledger)!r}, isolation_level=None)\n"
             "con.execute('PRAGMA cache_size=1')\ncon.execute('BEGIN IMMEDIATE')\n"
             "con.execute('DELETE FROM records')\n"
             "for i in range(3000):\n"
             "    con.execute('INSERT INTO records VALUES (?,?,?,?)', "
             "(9, str(i), '{}' * 50, None))\n"
             "os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", crash], check=False)
    assert Path(f"{ledger}-journal").exists()
    before = ledger.read_bytes()
    out = cli("plan", str(gen.root))
    assert out.exit_code == 0, out.output
    assert "No changes." in out.output
    assert ledger.read_bytes() == before and Path(f"{ledger}-journal").exists()  # wrote nothing
    assert apply(gen).exit_code == 0  # apply rolls the journal back for real
    assert not Path(f"{ledger}-journal").exists() or Path(f"{ledger}-journal").stat().st_size == 0
    with Ledger(ledger, writable=False) as led:
        assert led.count(DEST) == 40 and led.count("x") == 0


def test_an_unreadable_ledger_never_advises_moving_it_away(tmp_path: Path) -> None:
    gen = checkout(tmp_path, "p", None)
    (gen.root / ".brazecfg").mkdir()
    (gen.root / ".brazecfg" / "ledger.sqlite").write_bytes(b"not sqlite" * 500)
    out = cli("plan", str(gen.root))
    assert out.exit_code == 1
    assert "Do not delete or move it" in out.output and "move it away" not in out.output


def test_a_state_from_a_newer_brazecfg_is_refused(tmp_path: Path, emu: Emulator) -> None:
    gen = checkout(tmp_path, "p", None)
    assert apply(gen).exit_code == 0
    con = sqlite3.connect(gen.root / ".brazecfg" / "ledger.sqlite")
    with con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    con.close()
    for cmd in (["plan", str(gen.root)], ["apply", str(gen.root), "--auto-approve"]):
        out = cli(*cmd)
        assert out.exit_code == 1 and "newer brazecfg" in out.output and "upgrade" in out.output


def test_an_unreachable_backend_names_backend_and_host_never_the_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.pg import free_port

    secret = "pw-canary-81d2"
    monkeypatch.setenv("BRAZECFG_STATE_URL",
                       f"postgresql://u:{secret}@127.0.0.1:{free_port()}/db")
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", "http://127.0.0.1:9")
    gen = checkout(tmp_path, "p", {"backend": "postgres",
                                   "url": "{{ env('BRAZECFG_STATE_URL') }}"})
    for cmd in (["plan", str(gen.root)], ["apply", str(gen.root), "--auto-approve"],
                ["state", "list", "-p", str(gen.root)]):
        out = cli(*cmd)
        assert out.exit_code == 1, out.output
        assert "postgres 127.0.0.1" in out.output and secret not in out.output, out.output
        assert "unexpected" not in out.output


def test_a_shared_state_never_gets_a_key_file_of_one_machine(
        tmp_path: Path, emu: Emulator, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRAZECFG_HASH_KEY")
    monkeypatch.setenv("BRAZECFG_STATE_URL", postgres_url)
    gen = checkout(tmp_path, "p", {"backend": "postgres", "schema": f"k_{uuid.uuid4().hex[:8]}",
                                   "url": "{{ env('BRAZECFG_STATE_URL') }}"})
    out = apply(gen)
    assert out.exit_code == 1 and "set BRAZECFG_HASH_KEY" in out.output, out.output
    assert not (gen.root / ".brazecfg" / "hash.key").exists() and n_requests(emu) == 0


def test_a_duckdb_state_open_in_another_process_is_a_clear_error(tmp_path: Path) -> None:
    import duckdb

    shared = tmp_path / "shared.duckdb"
    duckdb.connect(str(shared)).close()
    gen = checkout(tmp_path, "p", {"backend": "warehouse", "app": "statewh"},
                   {"kind": "app", "name": "statewh", "type": "duckdb",
                    "options": {"path": str(shared)}})
    code = f"import duckdb, time; c = duckdb.connect({str(shared)!r}); print('open', flush=True); time.sleep(60)"
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "open"
        other.stdout.close()
        out = cli("plan", str(gen.root))
        assert out.exit_code == 1
        assert "open in another process" in out.output and f"PID {other.pid}" in out.output
        assert "unexpected" not in out.output
    finally:
        other.kill()
        other.wait()


# -- the state commands ------------------------------------------------------------------------

def test_state_list_show_rm_and_mv(tmp_path: Path, emu: Emulator) -> None:
    gen = checkout(tmp_path, "p", None)
    assert apply(gen).exit_code == 0
    p = ["-p", str(gen.root)]
    out = cli("state", "list", *p)
    assert out.exit_code == 0, out.output
    assert f"destination/{DEST}: 40 records" in out.output
    # the state keys a stream by its identity (source:key:type), not its display name
    assert "events/page_views:id:event:" in out.output and "sent" in out.output
    assert "lock: free" in out.output
    out = cli("state", "show", f"destination/{DEST}", "1", *p)
    assert out.exit_code == 0 and "tracked fields: " in out.output, out.output
    assert "email" in out.output and "user1@example.com" not in out.output  # names, not values
    assert "groups:" in out.output and "last failure: none" in out.output
    out = cli("state", "show", f"destination/{DEST}", *p)
    assert f"events/page_views:id:event: {len(gen.events)} sent" in out.output, out.output
    assert "row 1: sent" not in out.output  # sent rows only with --events
    out = cli("state", "show", f"destination/{DEST}", "--events", *p)
    assert "events/page_views:id:event row 1: sent" in out.output
    assert cli("state", "show", "destination/nope", *p).exit_code == 1
    assert cli("state", "show", "nonsense", *p).exit_code == 1

    # mv: a renamed destination and a renamed stream resend nothing.
    cfg = gen.root / "destinations" / "braze_users.yml"
    doc = json.loads(cfg.read_text())
    doc["name"] = "renamed"
    doc["events"][0]["name"] = "pages"  # a new display name alone needs no mv
    cfg.write_text(json.dumps(doc))
    assert cli("state", "mv", f"destination/{DEST}", "destination/renamed", *p).exit_code == 0
    sent = n_requests(emu)
    out = cli("apply", str(gen.root), "--auto-approve")
    assert out.exit_code == 0, out.output
    assert n_requests(emu) == sent, logged(emu)[sent:]
    # A new identity (an explicit id) does: the stream's rows move to it, none is resent.
    doc["events"][0]["id"] = "pages"
    cfg.write_text(json.dumps(doc))
    out = cli("state", "mv", "destination/renamed/events/page_views:id:event",
              "destination/renamed/events/pages", *p)
    assert out.exit_code == 0, out.output
    out = cli("apply", str(gen.root), "--auto-approve")
    assert out.exit_code == 0, out.output
    assert n_requests(emu) == sent, logged(emu)[sent:]

    # rm: refused without a yes when no one can answer, then forgets.
    out = cli("state", "rm", "destination/renamed", *p)
    assert out.exit_code == 1 and "--yes" in out.output
    assert cli("state", "rm", "destination/renamed", "--yes", *p).exit_code == 0
    assert "no destinations" in cli("state", "list", *p).output


def test_pull_push_round_trip_and_push_refuses_a_newer_state(
        tmp_path: Path, emu: Emulator) -> None:
    gen = checkout(tmp_path, "p", None)
    assert apply(gen).exit_code == 0
    p = ["-p", str(gen.root)]
    backup = tmp_path / "backup.jsonl"
    out = cli("state", "pull", str(backup), *p)
    assert out.exit_code == 0, out.output
    head = json.loads(backup.read_text().splitlines()[0])
    assert head["format"] == "brazecfg-state" and head["schema_version"] == 4
    assert backup.stat().st_mode & 0o077 == 0  # it holds external ids
    # The state moves on: pushing the older backup is refused without --force.
    gen.set_score([1, 2, 3], 1)
    assert apply(gen).exit_code == 0
    out = cli("state", "push", str(backup), *p)
    assert out.exit_code == 1 and "newer than the export" in out.output, out.output
    # A lost state is restored from the backup: nothing is sent twice.
    shutil.rmtree(gen.root / ".brazecfg")
    out = cli("state", "push", str(backup), *p)
    assert out.exit_code == 0, out.output
    out = cli("plan", str(gen.root))
    assert out.exit_code == 0 and "No changes." not in out.output  # only the 3 score updates
    assert "3 to update" in out.output or "update" in out.output
    # A damaged export changes nothing.
    lines = backup.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-5]) + "\n")
    out = cli("state", "push", str(cut), "--force", *p)
    assert out.exit_code == 1 and "cut short" in out.output
    with Ledger(gen.root / ".brazecfg" / "ledger.sqlite", writable=False) as led:
        assert led.count(DEST) == 40


def test_migrate_local_to_postgres_then_plan_there(
        tmp_path: Path, emu: Emulator, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = checkout(tmp_path, "p", None)
    assert apply(gen).exit_code == 0
    schema = f"m_{uuid.uuid4().hex[:8]}"
    out = cli("state", "migrate", "--to", "postgres", "--url", postgres_url, "--schema", schema,
              "-p", str(gen.root))
    assert out.exit_code == 0, out.output
    assert "40 records" in out.output and "pg-test-secret" not in out.output
    assert (gen.root / ".brazecfg" / "ledger.sqlite").exists()  # the source is kept
    out = cli("state", "migrate", "--to", "postgres", "--url", postgres_url, "--schema", schema,
              "-p", str(gen.root))
    assert out.exit_code == 1 and "already holds a state" in out.output
    monkeypatch.setenv("BRAZECFG_STATE_URL", postgres_url)
    (gen.root / "brazecfg.yml").write_text(json.dumps({"name": "delivery", "state": {
        "backend": "postgres", "url": "{{ env('BRAZECFG_STATE_URL') }}", "schema": schema}}))
    shutil.rmtree(gen.root / ".brazecfg")
    sent = n_requests(emu)
    out = cli("plan", str(gen.root))
    assert out.exit_code == 0 and "No changes." in out.output, out.output
    assert apply(gen).exit_code == 0 and n_requests(emu) == sent


def test_a_first_apply_of_a_saved_plan_is_not_stale(tmp_path: Path, emu: Emulator) -> None:
    """Writing the key check (metadata) on the first apply does not move the generation."""
    gen = checkout(tmp_path, "p", None)
    saved = tmp_path / "plan.json"
    assert cli("plan", str(gen.root), "--out", str(saved)).exit_code == 0
    out = apply(gen, "--plan", str(saved))
    assert out.exit_code == 0, out.output
    assert len(emu.store.users()) == 40


def test_a_v3_state_is_migrated_to_packed_hashes_and_plans_no_changes(
        tmp_path: Path, emu: Emulator) -> None:
    """v4 packs field hashes as binary and adds the record hash: the same hash values, so an
    existing state plans "No changes." before and after its migration, and sends nothing."""
    gen = checkout(tmp_path, "p", None)
    assert apply(gen).exit_code == 0
    ledger = gen.root / ".brazecfg" / "ledger.sqlite"
    records = _json_records(ledger)
    con = sqlite3.connect(ledger)
    with con:  # the v3 layout: JSON field hashes, no row_hash column, no field names
        con.execute("DROP TABLE records")
        con.execute("CREATE TABLE records (destination TEXT NOT NULL, external_id TEXT NOT "
                    "NULL, fields TEXT NOT NULL, groups TEXT NOT NULL, confirmed_at TEXT NOT "
                    "NULL, PRIMARY KEY (destination, external_id)) WITHOUT ROWID")
        con.executemany("INSERT INTO records VALUES (?,?,?,?,?)", records)
        con.execute("DELETE FROM meta WHERE key IN ('destinations', 'group_sets') OR key "
                    "LIKE 'fields:%'")
        con.execute("UPDATE meta SET value = '3' WHERE key = 'version'")
    con.close()
    sent = n_requests(emu)
    out = cli("plan", str(gen.root))
    assert out.exit_code == 0 and "No changes." in out.output, out.output
    assert apply(gen).exit_code == 0
    assert n_requests(emu) == sent
    con = sqlite3.connect(ledger)
    kinds = {type(r[0]) for r in con.execute("SELECT fields FROM records")}
    con.close()
    assert kinds == {bytes}
    with Ledger(ledger, writable=False) as led:
        assert led.schema_version == 4 and led.count(DEST) == 40
        assert {r.external_id: (r.fields, sorted(r.groups)) for r in led.stream(DEST)} == {
            str(k): (json.loads(str(f)), json.loads(str(g))) for _, k, f, g, _ in records}
    out = cli("plan", str(gen.root))
    assert out.exit_code == 0 and "No changes." in out.output, out.output
    # The migrated state round-trips through an export: pushed into a new state, it is
    # the same records (names, JSON field hashes, row hashes) and still plans no changes.
    p = ["-p", str(gen.root)]
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert cli("state", "pull", str(first), *p).exit_code == 0
    shutil.rmtree(gen.root / ".brazecfg")
    out = cli("state", "push", str(first), *p)
    assert out.exit_code == 0, out.output
    assert cli("state", "pull", str(second), *p).exit_code == 0
    exported = [[json.loads(line) for line in f.read_text().splitlines()[1:]
                 if '"t": "record"' in line] for f in (first, second)]
    assert len(exported[0]) == 40 and exported[0] == exported[1]
    assert all(r["row_hash"] for r in exported[0])  # stored by the apply after migrating
    out = cli("plan", str(gen.root))
    assert out.exit_code == 0 and "No changes." in out.output, out.output


def test_a_state_in_the_sqlite_warehouse_the_model_reads_applies_and_plans_no_changes(
        tmp_path: Path, emu: Emulator) -> None:
    """``state: backend: warehouse`` on the model's own SQLite app puts the state's tables in
    the file the model is read from. Apply used to stop after 60 s with "database is
    locked": its state reads began write transactions (BEGIN IMMEDIATE), whose commit waited
    for the model read's shared lock on the same file, held while the two are merged. Reads
    now begin deferred; only writes take the write lock."""
    gen = checkout(tmp_path, "one", {"backend": "warehouse", "app": "warehouse"})
    first = apply(gen)
    assert first.exit_code == 0, first.output
    assert f"{len(gen.users)} created" in first.stdout
    again = cli("plan", str(gen.root))
    assert again.exit_code == 0, again.output
    assert "No changes" in again.stdout
