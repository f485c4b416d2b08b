"""DuckDB spills to a temporary directory of brazecfg's own (brazecfg/scratch.py). The
setting belongs to the database instance, which every connection to the file in one process
shares, and DuckDB refuses to change it once it has spilled there, even to the same path:
each later connection then failed; and a directory removed with the engine that set it
failed the next spill of another engine still on the instance. At 3M users with the state kept in DuckDB
(bench/warehouse_state.py), plan 2, apply 2 and plan 3 all stopped with "cannot connect to
read model/users: Cannot switch temporary directory after the current one has been used"."""

from __future__ import annotations

from pathlib import Path

import duckdb
from sqlalchemy import text

from brazecfg.warehouse.connect import connect
from brazecfg.warehouse.engine import SqlWarehouse
from tests.warehouse import build as b


def test_connections_opened_after_duckdb_spilled_still_connect(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE users (user_id VARCHAR, country VARCHAR)")
        con.execute("INSERT INTO users VALUES ('1', 'GB')")
        con.execute("CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s "
                    "FROM range(1500000)")
    the_app = b.app("duckdb", path=str(path), memory_limit="64MB")
    project = b.project(str(tmp_path), the_app, [b.source("users", "users")],
                        [b.prop("user_id", "users", "user_id"), b.prop("country", "users")])
    first = connect(the_app, project)
    assert isinstance(first, SqlWarehouse)
    second = None
    try:
        with first.engine.connect() as conn:
            spill_to = conn.execute(text("SELECT current_setting('temp_directory')")).scalar()
            assert "brazecfg-duckdb-" in str(spill_to)
            # an aggregate larger than the memory limit: DuckDB spills into the directory
            assert conn.execute(text("SELECT count(*) FROM (SELECT DISTINCT s FROM t)")
                                ).scalar() == 1500000
            assert Path(str(spill_to)).is_dir()
            with first.engine.connect() as again:  # a second pooled connection
                assert again.execute(text("SELECT count(*) FROM users")).scalar() == 1
        second = connect(the_app, project)  # another engine on the same file (the state's)
        assert isinstance(second, SqlWarehouse)
        with second.engine.connect() as other:
            assert other.execute(text("SELECT count(*) FROM users")).scalar() == 1
            # the instance keeps spilling where it began to
            assert other.execute(text("SELECT current_setting('temp_directory')")
                                 ).scalar() == spill_to
        # The first engine closes while the second still uses the instance: the directory,
        # shared, stays (removed under it, the second's next spill failed: "Cannot open
        # file .../duckdb_temp_..."), and goes with the last engine.
        first.close()
        assert Path(str(spill_to)).is_dir()
        with second.engine.connect() as other:
            assert other.execute(text("SELECT count(*) FROM (SELECT DISTINCT s FROM t)")
                                 ).scalar() == 1500000
    finally:
        if second is not None:
            second.close()
        first.close()
    assert not Path(str(spill_to)).exists()
