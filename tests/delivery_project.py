"""A generated brazecfg project for the delivery tests: a SQLite warehouse of N users with
1-2 page views each, a group over a property that feeds a subscription group, and an event
stream. The generated rows are returned too, so a test can compute what Braze must hold
independently of brazecfg."""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

GROUP_ID = "0b6f7f0e-7d4c-4a57-9a64-3c1f4c0a00e1"
ENGAGED_FROM = 70  # score >= 70: in the "engaged" group, subscribed to GROUP_ID
PLANS = ("free", "pro", "team", None)
NAMES = ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Margaret", "Radia")
EVENT = "page_viewed"
# A month whose days 1-28 are all past and less than 60 days ago, whatever today is.
RECENT = (datetime.now(timezone.utc) - timedelta(days=30)).strftime("%Y-%m")


@dataclass
class User:
    id: int
    email: str
    first_name: str
    score: int
    plan: str | None
    tags: str  # comma-separated, a string_array property

    @property
    def external_id(self) -> str:
        return str(self.id)

    def attributes(self) -> dict[str, Any]:
        """What Braze must hold for this user, computed without brazecfg."""
        out: dict[str, Any] = {"email": self.email, "first_name": self.first_name,
                               "score": self.score}
        if self.plan is not None:
            out["plan"] = self.plan
        out["tags"] = list(dict.fromkeys(t for t in self.tags.split(",") if t))  # [] too
        return out

    @property
    def engaged(self) -> bool:
        return self.score >= ENGAGED_FROM


@dataclass
class Event:
    id: int
    user_id: int
    page: str
    created_at: str


@dataclass
class Generated:
    root: Path
    users: list[User] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.root / "warehouse.db"

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        con = sqlite3.connect(self.db)
        with con:
            con.execute(statement, params)
        con.close()

    def set_score(self, ids: list[int], score: int) -> None:
        con = sqlite3.connect(self.db)
        with con:
            con.executemany("UPDATE users SET score = ? WHERE id = ?", [(score, i) for i in ids])
        con.close()
        by_id = {u.id: u for u in self.users}
        for i in ids:
            by_id[i].score = score

    def set_tags(self, user_id: int, tags: str) -> None:
        self.execute("UPDATE users SET tags = ? WHERE id = ?", (tags, user_id))
        next(u for u in self.users if u.id == user_id).tags = tags


def _yaml(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"  # JSON is YAML


def make_project(tmp_path: Path, n_users: int, *, seed: int = 7, events: bool = True,
                 braze_options: dict[str, Any] | None = None,
                 destination: dict[str, Any] | None = None,
                 event_month: str = "2026-10") -> Generated:
    """Write the project to ``tmp_path/project`` and return it with its rows. Events fall on
    days 1-28 of ``event_month`` (YYYY-MM; ``RECENT``: within Braze's 90-day export window,
    whatever today is, for tests that settle from Braze's counts)."""
    rng = random.Random(seed)
    root = tmp_path / "project"
    for sub in ("apps", "models", "sources", "properties", "groups", "destinations"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    gen = Generated(root)
    for i in range(1, n_users + 1):
        tags = ",".join(rng.sample(["a", "b", "c", "d"], rng.randint(0, 2)))
        gen.users.append(User(i, f"user{i}@example.com", rng.choice(NAMES), rng.randrange(100),
                              rng.choice(PLANS), tags))
    if events:
        n = 0
        for u in gen.users:
            for _ in range(rng.choice((1, 1, 2))):
                n += 1
                gen.events.append(Event(n, u.id, f"/p/{rng.randrange(50)}",
                                        f"{event_month}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z"))

    con = sqlite3.connect(gen.db)
    with con:
        con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, "
                    "score INTEGER, plan TEXT, tags TEXT)")
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                        [(u.id, u.email, u.first_name, u.score, u.plan, u.tags)
                         for u in gen.users])
        con.execute("CREATE TABLE page_views (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
                    "page TEXT NOT NULL, created_at TEXT NOT NULL)")
        con.executemany("INSERT INTO page_views VALUES (?, ?, ?, ?)",
                        [(e.id, e.user_id, e.page, e.created_at) for e in gen.events])
    con.close()

    (root / "brazecfg.yml").write_text("name: delivery\n")
    options: dict[str, Any] = {
        "api_key": "{{ env('BRAZE_API_KEY', 'local-emulator-key') }}",
        "rest_endpoint": "{{ env('BRAZE_REST_ENDPOINT') }}",
    }
    options.update(braze_options or {})
    (root / "apps" / "braze.yml").write_text(_yaml(
        {"kind": "app", "name": "braze", "type": "braze", "options": options}))
    (root / "apps" / "warehouse.yml").write_text(_yaml(
        {"kind": "app", "name": "warehouse", "type": "sqlite",
         "options": {"path": "warehouse.db"}}))
    (root / "models" / "users.yml").write_text(_yaml(
        {"kind": "model", "name": "users", "primary_key": "user_id"}))
    (root / "sources" / "users.yml").write_text(
        _yaml({"kind": "source", "name": "users_table", "app": "warehouse", "model": "users",
               "table": "users", "key": "id"}) + "---\n"
        + _yaml({"kind": "source", "name": "page_views", "app": "warehouse", "model": "users",
                 "table": "page_views", "key": "user_id"}))
    props = [("user_id", "string", "id"), ("email", "email", "email"),
             ("first_name", "string", "first_name"), ("score", "integer", "score"),
             ("plan", "string", "plan"), ("tags", "string_array", "tags")]
    (root / "properties" / "users.yml").write_text("---\n".join(
        _yaml({"kind": "property", "name": n, "source": "users_table", "type": t, "column": c})
        for n, t, c in props))
    (root / "groups" / "engaged.yml").write_text(_yaml(
        {"kind": "group", "name": "engaged", "model": "users", "match": "all",
         "rules": [{"property": "score", "op": "gte", "value": ENGAGED_FROM}]}))
    dest: dict[str, Any] = {
        "kind": "destination", "name": "braze_users", "app": "braze", "model": "users",
        "mode": "sync",
        "mapping": {"external_id": "user_id", "email": "email", "first_name": "first_name"},
        "custom_attributes": {"score": "score", "plan": "plan", "tags": "tags"},
        "subscription_groups": {"engaged": GROUP_ID},
    }
    if events:
        dest["events"] = [{"name": EVENT, "source": "page_views", "key": "id",
                           "time": "created_at", "properties": {"row": "id", "page": "page"}}]
    dest.update(destination or {})
    (root / "destinations" / "braze_users.yml").write_text(_yaml(dest))
    return gen
