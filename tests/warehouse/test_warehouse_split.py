"""A full read of a SQLite model split into ranges of key text (engine.SQLITE_SPLIT_ROWS),
each range computed ahead on a thread of its own, gives exactly the rows of one statement:
the same records in the same order, duplicates and keyless rows in their places, the same
values, groups and record hashes (computed from the row instead of by SQLite's function).
Keys of every kind SQLite stores (integers, integral and other reals, texts that look like
numbers, empty text, NULL) and related rows of each, for every record hash kind."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from brazecfg.errors import WarehouseError
from brazecfg.model.resources import Project
from brazecfg.warehouse import engine as engine_mod
from brazecfg.warehouse.base import ModelRow
from brazecfg.warehouse.compile import HASH_COUNTS, HASH_NONE, HASH_VALUES
from brazecfg.warehouse.connect import connect
from tests.helpers import count_split_reads
from tests.warehouse import build as b
from tests.warehouse.data import NOW


def _keys(rng: random.Random, n: int, *, refused: bool) -> list[Any]:
    """Keys of every kind, some sharing one key text (1, 1.0 and '1'); ``refused``: some
    that are no key (2.5)."""
    pool: list[Any] = []
    kinds = [int, float, str, lambda i: f"0{i}", lambda i: f"u{i}", lambda i: f"é{i}",
             lambda i: f"{i} ", lambda i: -i, lambda i: i * 1e3, lambda i: f"b{i}".encode()]
    for i in range(n):
        pool.append(rng.choice(kinds)(i) if not refused or i % 50 else i + 0.5)
    pool += [None, None, "", "", 7, 7.0, "7", b"7", 10**15, "Z", "a"]
    rng.shuffle(pool)
    return pool


def _warehouse(root: Path, seed: int, n: int, *, refused: bool = False) -> list[Any]:
    rng = random.Random(seed)
    keys = _keys(rng, n, refused=refused)
    con = sqlite3.connect(root / "wh.sqlite")
    # no declared types: each value keeps the kind it was written with
    con.execute("CREATE TABLE users (id, email, score)")
    con.execute("CREATE TABLE purchases (user_id, amount, status, created_at, product)")
    con.executemany("INSERT INTO users VALUES (?, ?, ?)",
                    [(k, rng.choice([None, f"e{i}@x.io"]), rng.choice([None, i, i / 4, "s"]))
                     for i, k in enumerate(keys)])
    related = [*keys, 999_999, "nobody", None]
    con.executemany("INSERT INTO purchases VALUES (?, ?, ?, ?, ?)",
                    [(rng.choice(related), rng.choice([None, 5, 12.5, 600]),
                      rng.choice(["paid", "refunded", None]),
                      rng.choice([None, "2024-01-01", "2024-02-03 10:00:00", "2023-12-31"]),
                      rng.choice([None, "book", "lamp", 3]))
                     for _ in range(3 * len(keys))])
    con.commit()
    con.close()
    return keys


def _project(root: Path) -> Project:
    sources = [b.source("users", "users", key="id"), b.source("purchases", "purchases")]
    props = [b.prop("user_id", "users", "id"), b.prop("email", "users"),
             b.prop("score", "users"),
             b.prop("paid", "purchases", "amount", aggregate="sum",
                    filters=[("status", "eq", "paid")]),
             b.prop("orders", "purchases", aggregate="count"),
             b.prop("last_product", "purchases", "product", aggregate="most_recent",
                    sort="created_at")]
    groups = [b.group("big", b.rule("paid", "gte", 500))]
    return b.project(str(root), b.app("sqlite", path="wh.sqlite"), sources, props, groups)


def exact(rows: list[ModelRow]) -> list[tuple[Any, ...]]:
    """Rows with each value's type: ``==`` alone takes 1, 1.0 and True for one value."""
    return [(r.key, [(type(v), v) for v in r.values.values()], r.groups, r.row_hash)
            for r in rows]


def _read(project: Project, hash_kind: str) -> list[ModelRow]:
    wh = connect(project.apps[b.APP], project)
    try:
        return list(wh.stream_model(b.MODEL, now=NOW, hash_kind=hash_kind, batch_size=7))
    finally:
        wh.close()


@pytest.fixture
def ranges(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every full read split (one range per 20 sampled rows, every row sampled); the
    number of ranges each read was split into."""
    seen = count_split_reads(monkeypatch)
    monkeypatch.setattr(engine_mod, "SQLITE_SPLIT_ROWS", 20)
    return seen


def _whole(monkeypatch: pytest.MonkeyPatch, project: Project, hash_kind: str
           ) -> list[ModelRow]:
    with monkeypatch.context() as m:
        m.setattr(engine_mod, "SQLITE_SPLIT_ROWS", 10**12)
        return _read(project, hash_kind)


@pytest.mark.parametrize("hash_kind", [HASH_VALUES, HASH_NONE, HASH_COUNTS])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_split_read_gives_the_rows_of_one_statement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranges: list[int], seed: int,
        hash_kind: str) -> None:
    _warehouse(tmp_path, seed, 300)
    project = _project(tmp_path)
    whole = _whole(monkeypatch, project, hash_kind)
    assert not ranges, "the whole read was split"
    split = _read(project, hash_kind)
    assert ranges == [engine_mod.SQLITE_SPLIT_MAX], ranges
    assert len(split) == len(whole)
    assert exact(split) == exact(whole)
    if hash_kind != HASH_NONE:
        assert all(r.row_hash is not None for r in whole)


def test_a_split_read_holds_every_kind_of_row_in_its_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranges: list[int]) -> None:
    keys = _warehouse(tmp_path, 4, 400)
    project = _project(tmp_path)
    whole = _whole(monkeypatch, project, HASH_VALUES)
    split = _read(project, HASH_VALUES)
    assert ranges == [engine_mod.SQLITE_SPLIT_MAX]
    assert exact(split) == exact(whole)
    texts = [r.key for r in split]
    assert len(split) == len(keys)  # every row, duplicates too (the diff reports them)
    at = texts.index("7")
    assert texts[at:at + 4] == ["7"] * 4, "7, 7.0, '7' and the bytes 7 are not one key text"
    # the two empty texts sort first, the two NULL keys last (both read as "")
    assert texts[:2] == ["", ""] and texts[-2:] == ["", ""], (texts[:3], texts[-3:])
    assert "" not in texts[2:-2]
    assert texts[2:-2] == sorted(texts[2:-2], key=lambda t: t.encode())


def test_a_split_read_refuses_a_key_as_one_statement_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranges: list[int]) -> None:
    """A key that is no whole number (2.5) stops the read with the same error, after the
    same rows (its key text is NULL: it sorts last, in the last range)."""
    _warehouse(tmp_path, 5, 300, refused=True)
    project = _project(tmp_path)

    def until_refused() -> tuple[list[ModelRow], str]:
        wh = connect(project.apps[b.APP], project)
        got: list[ModelRow] = []
        try:
            with pytest.raises(WarehouseError) as err:
                got.extend(wh.stream_model(b.MODEL, now=NOW, batch_size=7))
        finally:
            wh.close()
        return got, str(err.value)

    with monkeypatch.context() as m:
        m.setattr(engine_mod, "SQLITE_SPLIT_ROWS", 10**12)
        whole, whole_error = until_refused()
    split, split_error = until_refused()
    assert ranges == [engine_mod.SQLITE_SPLIT_MAX]
    assert "which is not a whole number" in whole_error
    assert (split, split_error) == (whole, whole_error)
    assert len(whole) > 250


def test_a_small_model_is_read_in_one_statement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranges: list[int]) -> None:
    _warehouse(tmp_path, 6, 300)
    monkeypatch.setattr(engine_mod, "SQLITE_SPLIT_ROWS", 10**6)
    _read(_project(tmp_path), HASH_VALUES)
    assert ranges == []


def test_a_query_source_is_never_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranges: list[int]) -> None:
    """Each range reads every source again: a query may cost far more than a table scan."""
    _warehouse(tmp_path, 7, 300)
    project = _project(tmp_path)
    sources = dict(project.sources)
    sources["purchases"] = b.source("purchases", query="SELECT * FROM purchases")
    props = list(project.properties.values())
    queried = b.project(str(tmp_path), b.app("sqlite", path="wh.sqlite"),
                        list(sources.values()), props, list(project.groups.values()))
    rows = _read(queried, HASH_VALUES)
    assert ranges == []
    assert rows == _whole(monkeypatch, project, HASH_VALUES)


@pytest.mark.parametrize("column", ["TEXT PRIMARY KEY NOT NULL", "INTEGER PRIMARY KEY"])
def test_a_split_read_of_a_key_that_cannot_repeat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranges: list[int], column: str
        ) -> None:
    """A text key (ordered and split by the column itself, through its index) and a rowid
    key (sorted by itself alone): the rows of one statement too."""
    rng = random.Random(8)
    ids: list[Any] = rng.sample(range(-50, 10**6), 300)
    if column.startswith("TEXT"):
        ids = [rng.choice([str(i), f"k{i}", f"é{i}", f"{i}.0", f" {i}"]) for i in ids]
    con = sqlite3.connect(tmp_path / "wh.sqlite")
    con.execute(f"CREATE TABLE users (id {column}, email, score)")
    con.execute("CREATE TABLE purchases (user_id, amount, status, created_at, product)")
    con.executemany("INSERT INTO users VALUES (?, ?, ?)",
                    [(k, f"e{i}@x.io", i) for i, k in enumerate(ids)])
    con.executemany("INSERT INTO purchases VALUES (?, ?, ?, ?, ?)",
                    [(rng.choice(ids), rng.choice([5, 600]), "paid",
                      rng.choice(["2024-01-01", "2023-12-31"]), rng.choice(["book", None]))
                     for _ in range(600)])
    con.commit()
    con.close()
    project = _project(tmp_path)
    whole = _whole(monkeypatch, project, HASH_VALUES)
    split = _read(project, HASH_VALUES)
    assert ranges == [engine_mod.SQLITE_SPLIT_MAX]
    assert exact(split) == exact(whole)
    assert len(split) == 300


def test_a_wide_model_gets_the_record_hash_of_one_statement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranges: list[int]) -> None:
    """Past 127 values and group flags SQLite hashes the hashes of parts of the values
    (compile._sqlite_hash): the hash computed from a split read's rows must be that one."""
    width = 140
    con = sqlite3.connect(tmp_path / "wh.sqlite")
    cols = ", ".join(f"c{j}" for j in range(width))
    con.execute(f"CREATE TABLE users (id INTEGER PRIMARY KEY, {cols})")
    rng = random.Random(9)
    con.executemany(f"INSERT INTO users VALUES (?, {', '.join('?' * width)})",
                    [(i, *(rng.choice([None, j, f"t{i}", 1.5]) for j in range(width)))
                     for i in range(200)])
    con.commit()
    con.close()
    props = [b.prop("user_id", "users", "id"),
             *(b.prop(f"c{j}", "users") for j in range(width))]
    project = b.project(str(tmp_path), b.app("sqlite", path="wh.sqlite"),
                        [b.source("users", "users", key="id")], props, [])
    whole = _whole(monkeypatch, project, HASH_VALUES)
    split = _read(project, HASH_VALUES)
    assert ranges == [engine_mod.SQLITE_SPLIT_MAX]
    assert len(whole) == 200 and all(r.row_hash is not None for r in whole)
    assert exact(split) == exact(whole)
