"""``brazecfg import grouparoo``: a Grouparoo code-config directory -> a brazecfg project.

Everything that has a brazecfg equivalent is carried over (apps, models, table sources with
their schedules, properties with their aggregation methods and filters, groups with their
rules, relative dates included, destinations with their mappings and sync modes). Whatever
has none is never dropped in silence: it becomes a ``# TODO(grouparoo)`` comment in the file
of the resource it belongs to, naming the Grouparoo file:line:column, and a line of the
summary (``IMPORT.md``). When a rule or a filter cannot be translated, the whole group or
property is left out rather than written wider than it was (a group without one of its rules
would sync users it never held).

Input that is not a Grouparoo config at all (bad JSON, unknown classes, missing ids, a model
without a primary key) is an error at its location and nothing is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brazecfg.braze.standard_fields import RESERVED_ATTRIBUTE_NAMES, STANDARD_FIELDS
from brazecfg.errors import BrazecfgError, Diagnostic, Location, ProjectError
from brazecfg.importers.grouparoo_files import ConfigDir, GObject, read_config_dir

WAREHOUSE_APPS = {"sqlite", "postgres", "mysql", "snowflake", "bigquery", "redshift", "DBNAME"}
PROPERTY_TYPES = {"boolean": "boolean", "date": "datetime", "email": "email", "float": "float",
                  "integer": "integer", "phoneNumber": "phone", "string": "string", "url": "url"}
AGGREGATES = {"exact": None, "average": "avg", "count": "count", "sum": "sum", "min": "min",
              "max": "max", "most recent value": "most_recent",
              "least recent value": "least_recent"}
FILTER_OPS = {"eq": "eq", "ne": "ne", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte",
              "substring": "contains", "notSubstring": "not_contains", "in": "in",
              "exists": "exists", "notExists": "not_exists"}
RULE_OPS = {"eq": "eq", "ne": "ne", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte",
            "exists": "exists", "notExists": "not_exists", "startsWith": "starts_with",
            "substring": "contains", "notSubstring": "not_contains"}
UNITS = {"days": ("day", 1), "weeks": ("week", 1), "months": ("month", 1),
         "quarters": ("month", 3), "years": ("year", 1)}
# Field names other destinations used for what Braze has as a standard field (a guess, said so).
GUESSED_FIELDS = {"email": "email", "email_address": "email", "emailaddress": "email",
                  "fname": "first_name", "first_name": "first_name", "firstname": "first_name",
                  "lname": "last_name", "last_name": "last_name", "lastname": "last_name",
                  "phone": "phone", "phone_number": "phone", "phonenumber": "phone"}
NOT_CARRIED_CLASSES = {"setting": "a Grouparoo setting", "apikey": "a Grouparoo API key",
                       "team": "a Grouparoo team", "teammember": "a Grouparoo team member",
                       "record": "a sample record", "profile": "a sample record"}
FOLDERS = {"app": "apps", "model": "models", "source": "sources", "property": "properties",
           "group": "groups", "destination": "destinations"}


@dataclass(frozen=True)
class Note:
    """Something not carried over (or carried with a change of meaning), at its location."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class Out:
    """One brazecfg resource to write, with the TODOs that belong in its file."""

    kind: str
    name: str
    body: dict[str, Any]
    origin: Location | None = None
    todos: list[Note] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{FOLDERS[self.kind]}/{self.name}.yml"


@dataclass
class ImportResult:
    project_name: str
    resources: list[Out] = field(default_factory=list)
    carried: list[str] = field(default_factory=list)  # "Class id -> kind/name"
    notes: list[Note] = field(default_factory=list)  # every TODO and every item left out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.resources:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out


class Template(str):
    """A Jinja template brazecfg renders on load (``env(...)``): written as is."""


def _name(gid: str) -> str:
    """A Grouparoo id as a brazecfg name (letters, digits, _; not starting with a digit)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", gid)
    return name if re.match(r"^[A-Za-z_]", name) else f"_{name}"


def _env_name(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", value))


class _Translator:
    def __init__(self, cfg: ConfigDir, project_name: str) -> None:
        self.cfg = cfg
        self.result = ImportResult(project_name)
        self.apps = cfg.by_id("app")
        self.models = cfg.by_id("model")
        self.sources = cfg.by_id("source")
        self.props = cfg.by_id("property")
        self.groups = cfg.by_id("group")
        self.errors: list[Diagnostic] = []
        self.source_key: dict[str, str] = {}  # carried source id -> its key column
        self.primary: dict[str, str] = {}  # model id -> primary source id
        self.pk: dict[str, str] = {}  # model id -> primary-key property id
        self.carried_props: dict[str, Out] = {}
        self.carried_groups: set[str] = set()
        self.warehouse_apps: set[str] = set()
        self.braze_app: str | None = None

    # -- helpers ---------------------------------------------------------------------------
    def note(self, at: Location, message: str, out: Out | None = None) -> None:
        n = Note(at, message)
        self.result.notes.append(n)
        if out is not None:
            out.todos.append(n)

    def emit(self, out: Out, obj: GObject) -> None:
        self.result.resources.append(out)
        self.result.carried.append(f"{obj.get('class')} {obj.id} -> {out.kind}/{out.name}")

    def ref(self, obj: GObject, key: str, table: dict[str, GObject], what: str) -> GObject | None:
        value = obj.get(key)
        target = table.get(value) if isinstance(value, str) else None
        if target is None:
            self.errors.append(Diagnostic(obj.loc(key), f"{obj.get('class')} {obj.id}: {key} "
                                          f"{value!r} names no {what} of this config",
                                          hint=f"fix {key}"))
        return target

    # -- the translation, in dependency order ----------------------------------------------
    def run(self) -> ImportResult:
        for loc in self.cfg.js_files:
            self.note(loc, "a .js config file: brazecfg does not run JavaScript; export its "
                           "objects as JSON (node -e 'console.log(JSON.stringify(require(\"./"
                           "FILE\")))') and import again")
        for obj in self.cfg.objects:
            if obj.cls in NOT_CARRIED_CLASSES:
                self.note(obj.loc(), f"{NOT_CARRIED_CLASSES[obj.cls]} ({obj.get('class')} "
                                     f"{obj.id or '-'}): not carried over, brazecfg has none")
        self.find_primary_keys()
        if self.errors:
            return self.result
        self.translate_sources()
        self.translate_apps()
        self.translate_models()
        self.translate_properties()
        self.translate_groups()
        self.translate_destinations()
        return self.result

    def find_primary_keys(self) -> None:
        """Grouparoo's primary source maps its key column to the model's primary-key property,
        a property of that same source (``{"id": "user_id"}``)."""
        for mid, model in self.models.items():
            for sid, src in sorted(self.sources.items()):
                if src.get("modelId") != mid:
                    continue
                for column, pid in (src.get("mapping") or {}).items():
                    prop = self.props.get(pid)
                    if prop is not None and prop.get("sourceId") == sid:
                        self.primary[mid], self.pk[mid] = sid, pid
                        self.source_key[sid] = column
                        break
                if mid in self.primary:
                    break
            if mid not in self.primary:
                self.errors.append(Diagnostic(
                    model.loc(), f"model {mid}: no source maps a key column to a property of its "
                    "own (the model's primary key), so brazecfg cannot tell which user a record is",
                    hint="give the model's primary source a mapping such as {\"id\": \"user_id\"}"))

    def translate_sources(self) -> None:
        schedules: dict[str, GObject] = {}
        for sch in self.cfg.of("schedule"):
            sid = sch.get("sourceId")
            if sid in schedules:
                self.errors.append(Diagnostic(sch.loc("sourceId"), f"source {sid} has two "
                                              f"schedules (also {schedules[sid].loc()})"))
            elif self.ref(sch, "sourceId", self.sources, "source") is not None:
                schedules[sid] = sch
        for sid, src in self.sources.items():
            out = Out("source", _name(sid), {}, src.loc())
            stype = str(src.get("type") or "")
            app = self.ref(src, "appId", self.apps, "app")
            model = self.ref(src, "modelId", self.models, "model")
            if app is None or model is None:
                continue
            if not stype.endswith("-import-table"):
                why = ("a query source: brazecfg sources are tables or one query, and Grouparoo "
                       "keeps a query per property" if stype.endswith("-import-query") else
                       f"a {stype or 'typeless'} source: brazecfg reads warehouse tables only")
                self.note(src.loc("type"), f"source {sid} not carried over: {why}; write it as "
                                           "a source with table: or query: by hand")
                continue
            table = src.options.get("table")
            if not isinstance(table, str) or not table:
                self.note(src.loc("options"), f"source {sid} not carried over: no options.table")
                continue
            key = self.source_key.get(sid) or self.secondary_key(src, model.id)
            if key is None:
                continue
            self.source_key[sid] = key
            self.warehouse_apps.add(app.id)
            out.body = {"kind": "source", "name": out.name, "description": src.get("name", ""),
                        "app": _name(app.id), "model": _name(model.id), "table": table,
                        "key": key}
            if sid in schedules:
                self.schedule(schedules[sid], out)
            self.emit(out, src)

    def secondary_key(self, src: GObject, model: str) -> str | None:
        mapping = src.get("mapping") or {}
        pk = self.pk[model]
        for column, pid in mapping.items():
            if pid == pk:
                return str(column)
        self.note(src.loc("mapping"), f"source {src.id} not carried over: it joins by "
                                      f"{', '.join(f'{c} -> {p}' for c, p in mapping.items()) or 'nothing'}, "
                                      f"and brazecfg joins related sources by the model's primary "
                                      f"key ({pk}) only")
        return None

    def schedule(self, sch: GObject, out: Out) -> None:
        self.result.carried.append(f"Schedule {sch.id} -> source/{out.name} (schedule, "
                                   "updated_at)")
        freq = sch.get("recurringFrequency")
        if sch.get("recurring") and isinstance(freq, (int, float)) and freq > 0:
            minutes = max(1, round(freq / 60000))
            out.body["schedule"] = (f"every {minutes // 60} hours" if minutes % 60 == 0
                                    else f"every {minutes} minutes")
            if minutes * 60000 != freq:
                self.note(sch.loc("recurringFrequency"), f"schedule of {sch.get('sourceId')}: "
                          f"{freq} ms rounded to {minutes} minutes", out)
        column = sch.options.get("column")
        if isinstance(column, str) and column:
            if sch.get("incremental") is False:
                self.note(sch.loc("incremental"), f"schedule {sch.id} read the source in full "
                          f"(incremental: false); add updated_at: {column} to read only changed "
                          "rows", out)
            else:
                out.body["updated_at"] = column
        if sch.get("filters"):
            self.note(sch.loc("filters"), f"schedule {sch.id}: filters are not carried over "
                      "(brazecfg reads every row of a source; filter in a query source)", out)

    def translate_apps(self) -> None:
        for aid, app in self.apps.items():
            atype = str(app.get("type") or "")
            if app.get("refresh"):
                self.note(app.loc("refresh"), f"app {aid}: refresh (a query that triggers a "
                          "run when its answer changes) is not carried over; use schedule:")
            if aid in self.warehouse_apps:
                self.warehouse_app(app, atype)
            elif atype == "braze":
                out = Out("app", _name(aid), {}, app.loc())
                out.body = {"kind": "app", "name": out.name, "type": "braze",
                            "description": app.get("name", ""),
                            "options": {"api_key": self.secret(app, "apiKey", "BRAZE_API_KEY",
                                                                   "local-emulator-key"),
                                        "rest_endpoint": self.secret(
                                            app, "restEndpoint", "BRAZE_REST_ENDPOINT",
                                            "http://127.0.0.1:4567")}}
                self.braze_app = self.braze_app or out.name
                self.emit(out, app)
            elif atype in WAREHOUSE_APPS:
                self.note(app.loc(), f"app {aid} ({atype}): no carried source reads it, not "
                                     "carried over")
            else:
                self.note(app.loc("type"), f"app {aid} is a {atype} app: brazecfg reads "
                          "warehouses and writes to Braze only; its destinations become Braze "
                          "destinations")

    def secret(self, app: GObject, key: str, default_env: str, fallback: str) -> str:
        """An option read from the environment as Grouparoo did (GROUPAROO_OPTION__APP__NAME),
        falling back to the local emulator like the example project, so the project validates
        and plans before any secret is set."""
        value = app.options.get(key)
        name = f"GROUPAROO_OPTION__APP__{value}" if isinstance(value, str) and _env_name(value) \
            else default_env
        if value and name == default_env:
            self.note(app.loc("options", key), f"app {app.id}: {key} was written in the config; "
                      f"brazecfg reads it from {default_env} instead (never commit a secret)")
        return Template(f"{{{{ env('{name}', '{fallback}') }}}}")

    def warehouse_app(self, app: GObject, atype: str) -> None:
        out = Out("app", _name(app.id), {}, app.loc())
        body: dict[str, Any] = {"kind": "app", "name": out.name,
                                "description": app.get("name", "")}
        opts = app.options
        if atype == "sqlite" and isinstance(opts.get("file"), str):
            body.update(type="sqlite", options={"path": opts["file"]})
            self.note(app.loc("options", "file"), f"app {app.id}: the SQLite file "
                      f"{opts['file']} is read relative to the brazecfg project: copy it there "
                      "or change options.path", out)
        elif atype == "postgres":
            mapped: dict[str, Any] = {}
            for gkey, bkey in (("host", "host"), ("port", "port"), ("database", "database"),
                               ("user", "user"), ("password", "password"), ("schema", "schema")):
                value = opts.get(gkey)
                if value is None:
                    continue
                if isinstance(value, str) and _env_name(value):
                    value = Template(f"{{{{ env('GROUPAROO_OPTION__APP__{value}', '') }}}}")
                mapped[bkey] = value
            body.update(type="postgres", options=mapped)
            for k in sorted(set(opts) - {"host", "port", "database", "user", "password",
                                         "schema"}):
                self.note(app.loc("options", k), f"app {app.id}: option {k} not carried over",
                          out)
        else:
            env = f"{out.name.upper()}_URL"
            body.update(type="sqlalchemy", options={
                "url": Template(f"{{{{ env('{env}', 'sqlite:///{out.name}.sqlite') }}}}")})
            why = ("the demo's placeholder for a database" if atype == "DBNAME"
                   else f"a {atype} database")
            self.note(app.loc("type"), f"app {app.id} is {why}: set {env} to its SQLAlchemy URL "
                      "(install the driver extra, e.g. brazecfg[snowflake]); its options were not "
                      "carried over", out)
        out.body = body
        self.emit(out, app)

    def translate_models(self) -> None:
        for mid, model in self.models.items():
            out = Out("model", _name(mid), {"kind": "model", "name": _name(mid),
                                            "description": model.get("name", ""),
                                            "primary_key": _name(self.pk[mid])}, model.loc())
            if model.get("type") not in (None, "profile"):
                self.note(model.loc("type"), f"model {mid} is of type {model.get('type')}: "
                          "Braze keeps users, so each record becomes a Braze user keyed by "
                          f"{self.pk[mid]}", out)
            self.emit(out, model)

    def translate_properties(self) -> None:
        for pid, prop in self.props.items():
            out = self.property(prop)
            if out is not None:
                self.carried_props[pid] = out
                self.emit(out, prop)

    def property(self, prop: GObject) -> Out | None:
        pid = prop.id
        sid = prop.get("sourceId")
        src = self.sources.get(sid) if isinstance(sid, str) else None
        if src is None:
            self.errors.append(Diagnostic(prop.loc("sourceId"), f"property {pid}: sourceId "
                                          f"{sid!r} names no source of this config"))
            return None
        if sid not in self.source_key:
            self.note(prop.loc("sourceId"), f"property {pid} not carried over: its source {sid} "
                                            "was not")
            return None
        opts = prop.options
        if "customFunction" in opts or "query" in opts:
            what = "a calculated property (JavaScript)" if "customFunction" in opts else \
                "a query property"
            self.note(prop.loc("options"), f"property {pid} not carried over: {what}; compute "
                      "it in the warehouse (a view or a query source) and declare it there")
            return None
        ptype = PROPERTY_TYPES.get(str(prop.get("type")))
        if ptype is None:
            self.note(prop.loc("type"), f"property {pid} not carried over: type "
                                        f"{prop.get('type')!r} has no brazecfg equivalent")
            return None
        method = opts.get("aggregationMethod", "exact")
        if method not in AGGREGATES:
            self.note(prop.loc("options", "aggregationMethod"), f"property {pid} not carried "
                      f"over: aggregation method {method!r} has no brazecfg equivalent")
            return None
        agg = AGGREGATES[method]
        model = str(src.get("modelId"))
        out = Out("property", _name(pid), {}, prop.loc())
        body: dict[str, Any] = {"kind": "property", "name": out.name,
                                "description": prop.get("key") or prop.get("name") or "",
                                "source": _name(sid), "type": ptype}
        if agg is None and sid != self.primary.get(model):
            self.note(prop.loc("options", "aggregationMethod"), f"property {pid} not carried "
                      f"over: exact value of {sid}, a source with several rows per record; "
                      "choose an aggregate (most_recent with sort, ...)")
            return None
        if agg is not None:
            body["aggregate"] = agg
            if agg == "avg":
                body["type"] = "float"
        if isinstance(opts.get("column"), str):
            body["column"] = opts["column"]
        if agg in ("most_recent", "least_recent"):
            if not isinstance(opts.get("sortColumn"), str):
                self.note(prop.loc("options"), f"property {pid} not carried over: {method} "
                                               "needs sortColumn")
                return None
            body["sort"] = opts["sortColumn"]
        if prop.get("unique") and pid != self.pk.get(model):
            self.note(prop.loc("unique"), f"property {pid}: unique is not carried over "
                      "(brazecfg does not check that values are unique)", out)
        if prop.get("isArray"):
            self.note(prop.loc("isArray"), f"property {pid} was an array (every value, in order); "
                      f"brazecfg keeps one value{' (' + str(agg) + ')' if agg else ''}: make it "
                      "a string_array column in the warehouse if you need the list", out)
        filters = []
        for i, f in enumerate(prop.get("filters") or []):
            op = FILTER_OPS.get(str(f.get("op"))) if isinstance(f, dict) else None
            if op is None or not isinstance(f.get("key"), str):
                self.note(prop.loc("filters", i), f"property {pid} not carried over: filter "
                          f"op {f.get('op') if isinstance(f, dict) else f!r} has no brazecfg "
                          "equivalent (leaving the filter out would change its values)")
                return None
            item: dict[str, Any] = {"column": f["key"], "op": op}
            if op not in ("exists", "not_exists"):
                item["value"] = _filter_value(op, f.get("match"))
            filters.append(item)
        if filters:
            body["filters"] = filters
        out.body = body
        return out

    def translate_groups(self) -> None:
        pending = dict(self.groups)
        # Rules only name properties here, but keep dependency order anyway (future-proof).
        for gid, grp in pending.items():
            out = self.group(grp)
            if out is not None:
                self.carried_groups.add(gid)
                self.emit(out, grp)

    def group(self, grp: GObject) -> Out | None:
        gid = grp.id
        if grp.get("type") not in (None, "calculated"):
            self.note(grp.loc("type"), f"group {gid} not carried over: a {grp.get('type')} "
                      "group (members added by hand) has no rules to compute")
            return None
        rules: list[dict[str, Any]] = []
        for i, rule in enumerate(grp.get("rules") or []):
            got = self.rule(grp, i, rule)
            if got is None:
                return None
            rules.append(got)
        if not rules:
            self.note(grp.loc(), f"group {gid} not carried over: it has no rules")
            return None
        out = Out("group", _name(gid), {"kind": "group", "name": _name(gid),
                                        "description": grp.get("name", ""),
                                        "model": _name(str(grp.get("modelId"))), "match": "all",
                                        "rules": rules}, grp.loc())
        return out

    def rule(self, grp: GObject, i: int, rule: Any) -> dict[str, Any] | None:
        at = grp.loc("rules", i)
        left_out = f"group {grp.id} not carried over (without this rule it would hold more users)"
        if not isinstance(rule, dict):
            self.note(at, f"{left_out}: rule {i + 1} is not an object")
            return None
        gop = rule.get("op")
        if gop is None and isinstance(rule.get("operation"), dict):
            gop = rule["operation"].get("op")  # pre-v0.8 spelling
        pid = rule.get("propertyId")
        if pid in ("grouparooId", "grouparooCreatedAt"):
            self.note(at, f"{left_out}: rule on {pid}, which only Grouparoo knows")
            return None
        prop = self.carried_props.get(pid) if isinstance(pid, str) else None
        if prop is None:
            self.note(at, f"{left_out}: rule on property {pid}, which was not carried over")
            return None
        ptype = prop.body["type"]
        out: dict[str, Any] = {"property": prop.name}
        match = rule.get("match")
        if gop in ("relative_gt", "relative_lt"):
            unit = UNITS.get(str(rule.get("relativeMatchUnit")))
            number = rule.get("relativeMatchNumber")
            if unit is None or not isinstance(number, (int, float)) or \
                    rule.get("relativeMatchDirection", "subtract") != "subtract":
                self.note(at, f"{left_out}: relative date rule {gop} with "
                              f"{rule.get('relativeMatchNumber')!r} "
                              f"{rule.get('relativeMatchUnit')!r} "
                              f"{rule.get('relativeMatchDirection', 'subtract')!r}: brazecfg has "
                              "within/not_within a duration in the past")
                return None
            n = int(number) * unit[1]
            out["op"] = "within" if gop == "relative_gt" else "not_within"
            out["value"] = f"{n} {unit[0]}{'s' if n != 1 else ''}"
            return out
        op = RULE_OPS.get(str(gop))
        if op is None and gop in ("like", "notLike") and isinstance(match, str):
            inner = match[1:-1] if match.startswith("%") and match.endswith("%") else None
            if inner and not re.search(r"[%_]", inner):
                op, match = ("contains" if gop == "like" else "not_contains"), inner
            elif gop == "like" and match.endswith("%") and not re.search(r"[%_]", match[:-1]):
                op, match = "starts_with", match[:-1]
        if op is None:
            self.note(grp.loc("rules", i, "op") if "op" in rule else at,
                      f"{left_out}: op {gop!r} (match {match!r}) has no brazecfg equivalent")
            return None
        out["op"] = op
        if op not in ("exists", "not_exists"):
            value = _typed(match, ptype)
            if value is None:
                self.note(at, f"{left_out}: match {match!r} is not a {ptype}")
                return None
            out["value"] = value
        return out

    def translate_destinations(self) -> None:
        dests = self.cfg.of("destination")
        if dests and self.braze_app is None:
            name = "braze" if _name("braze") not in {_name(a) for a in self.apps} else "braze_workspace"
            out = Out("app", name, {
                "kind": "app", "name": name, "type": "braze",
                "description": "The Braze workspace (created by the import: Grouparoo had none). "
                               "Set BRAZE_REST_ENDPOINT and BRAZE_API_KEY; without them, the "
                               "local emulator.",
                "options": {"api_key": Template("{{ env('BRAZE_API_KEY', 'local-emulator-key') }}"),
                            "rest_endpoint": Template("{{ env('BRAZE_REST_ENDPOINT', "
                                                      "'http://127.0.0.1:4567') }}")}})
            self.result.resources.append(out)
            self.braze_app = name
        for dest in dests:
            made = self.destination(dest)
            if made is not None:
                self.emit(made, dest)

    def destination(self, dest: GObject) -> Out | None:
        did = dest.id
        model = self.ref(dest, "modelId", self.models, "model")
        if model is None:
            return None
        dtype = str(dest.get("type") or "")
        is_braze = dtype.startswith("braze-")
        out = Out("destination", _name(did), {}, dest.loc())
        pk = self.pk[model.id]
        if pk not in self.carried_props:
            self.note(dest.loc(), f"destination {did} not carried over: the model's primary key "
                                  f"{pk} was not")
            return None
        body: dict[str, Any] = {"kind": "destination", "name": out.name,
                                "description": f"{dest.get('name', did)} (Grouparoo {dtype})",
                                "app": self.braze_app, "model": _name(model.id)}
        if not is_braze:
            self.note(dest.loc("type"), f"destination {did} was a {dtype} destination; it now "
                      "writes to Braze: check each field below (names that look like a Braze "
                      "standard field were mapped to it, the rest are custom attributes)", out)
        mode = dest.get("syncMode")
        if mode in ("sync", "additive", "enrich"):
            body["mode"] = mode
        else:
            body["mode"] = "additive"
            self.note(dest.loc("syncMode") if "syncMode" in dest.data else dest.loc(),
                      f"destination {did}: sync mode {mode!r} -> additive (creates and updates, "
                      "never deletes); choose sync to delete users who leave", out)
        mapping: dict[str, str] = {"external_id": _name(pk)}
        custom: dict[str, str] = {}
        for field_, pid in (dest.get("mapping") or {}).items():
            at = dest.loc("mapping", field_)
            prop = self.carried_props.get(pid) if isinstance(pid, str) else None
            if prop is None:
                self.note(at, f"destination {did}: field {field_} -> {pid} left out: property "
                              f"{pid} was not carried over", out)
                continue
            if field_ == "external_id":
                if pid != pk:
                    self.note(at, f"destination {did}: external_id was {pid}; brazecfg keys "
                                  f"Braze users by the model's primary key {pk}", out)
                continue
            target = str(field_) if is_braze or field_ in STANDARD_FIELDS else \
                GUESSED_FIELDS.get(str(field_).lower().replace(" ", "_"), "")
            if target in STANDARD_FIELDS and target not in mapping and \
                    prop.body["type"] in STANDARD_FIELDS[target]:
                mapping[target] = prop.name
                if not is_braze:
                    self.note(at, f"destination {did}: {field_} mapped to Braze's {target} (a "
                                  "guess from its name)", out)
                continue
            attr = field_ if field_ not in RESERVED_ATTRIBUTE_NAMES and not field_.startswith("$") \
                else f"grouparoo_{field_.lstrip('$')}"
            if attr != field_:
                self.note(at, f"destination {did}: {field_} is a name Braze keeps; written as "
                              f"custom attribute {attr}", out)
            custom[attr[:255]] = prop.name
        body["mapping"] = mapping
        if custom:
            body["custom_attributes"] = custom
        self.collection(dest, body, out)
        memberships = dest.get("destinationGroupMemberships") or {}
        if memberships:
            kept = {n: g for n, g in memberships.items() if g in self.carried_groups}
            for n, g in memberships.items():
                if g not in self.carried_groups:
                    self.note(dest.loc("destinationGroupMemberships", n), f"destination {did}: "
                              f"group {g} ({n}) was not carried over", out)
            if kept:
                attr = "groups" if "groups" not in custom else "grouparoo_groups"
                body["groups_attribute"] = attr
                if body["mode"] in ("additive", "enrich"):
                    # Grouparoo: when deletes are not allowed, a record that leaves keeps its
                    # profile and only loses its group names.
                    body["unsubscribe_leavers"] = True
                names = ", ".join(f"{g} (was {n!r})" for n, g in sorted(kept.items()))
                self.note(dest.loc("destinationGroupMemberships"), f"destination {did}: group "
                          f"memberships become the array attribute {attr!r}, which lists every "
                          f"group of model {model.id} by its brazecfg name ({names}); for Braze "
                          "subscription groups instead, add subscription_groups: {GROUP: "
                          "<subscription group UUID from the Braze dashboard>}", out)
        if dest.options and not is_braze:
            self.note(dest.loc("options"), f"destination {did}: options "
                      f"{', '.join(sorted(dest.options))} belong to {dtype} and were not carried "
                      "over", out)
        out.body = body
        return out

    def collection(self, dest: GObject, body: dict[str, Any], out: Out) -> None:
        collection = dest.get("collection")
        if collection == "group":
            gid = dest.get("groupId")
            if gid in self.carried_groups:
                body["group"] = _name(str(gid))
            else:
                self.note(dest.loc("groupId"), f"destination {dest.id} synced only the members "
                          f"of group {gid}, which was not carried over: it now syncs the whole "
                          "model; declare the group and set group: on the destination", out)
        elif collection == "none":
            self.note(dest.loc("collection"), f"destination {dest.id} had collection: none "
                      "(Grouparoo sent no one); brazecfg syncs every record of the model: set "
                      "group: to sync fewer", out)


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _filter_value(op: str, match: Any) -> Any:
    if op == "in":
        items = match if isinstance(match, list) else str(match).split(",")
        return [i.strip() if isinstance(i, str) else i for i in items]
    if op in ("gt", "gte", "lt", "lte") and isinstance(match, str):
        n = _number(match.strip())
        return match if n is None else n
    return match


def _typed(match: Any, ptype: str) -> Any:
    """Grouparoo keeps every match as text ("100"); brazecfg wants the property's type."""
    if match is None:
        return None
    if ptype in ("integer", "float"):
        return match if isinstance(match, (int, float)) else _number(str(match).strip())
    if ptype == "boolean":
        text = str(match).strip().lower()
        return {"true": True, "false": False}.get(text)
    return str(match)


# -- writing ---------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if not isinstance(value, Template) and ("{{" in value or "{%" in value or "{#" in value):
        value = "{% raw %}" + value + "{% endraw %}"  # a literal, never rendered
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value),
                                   style='"' if isinstance(value, Template) else None)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(Template, _str)


def render_resource(out: Out) -> str:
    lines = []
    if out.origin is not None:
        lines.append(f"# Imported from Grouparoo {out.origin}")
    for n in out.todos:
        lines.append(f"# TODO(grouparoo) {n.location}: {n.message}")
    body = {k: v for k, v in out.body.items() if v not in ("", None)}
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(lines) + ("\n" if lines else "") + text


def render_summary(result: ImportResult, source: Path) -> str:
    lines = [f"# Imported from Grouparoo: {source}", "",
             "Run `brazecfg validate .` and `brazecfg plan .`; every TODO below is also a "
             "`# TODO(grouparoo)` comment in the file it concerns.", "",
             "## Carried over", ""]
    lines += [f"- {c}" for c in result.carried] or ["- nothing"]
    lines += ["", "## Not carried over, or carried with a change (TODO)", ""]
    lines += [f"- `{n.location}`: {n.message}" for n in result.notes] or ["- nothing"]
    return "\n".join(lines) + "\n"


def translate(directory: Path) -> ImportResult:
    """The project a Grouparoo config directory becomes (nothing written). Raises
    ProjectError with every location when the directory is not a readable Grouparoo config."""
    if not directory.is_dir():
        raise BrazecfgError(f"{directory} is not a folder; give the Grouparoo project (the "
                            "folder holding config/) or its config folder")
    cfg = read_config_dir(directory)
    if cfg.errors:
        raise ProjectError(cfg.errors)
    if not cfg.objects and not cfg.js_files:
        raise BrazecfgError(f"no Grouparoo config objects (*.json) under {directory}")
    translator = _Translator(cfg, _project_name(directory))
    result = translator.run()
    if translator.errors:
        raise ProjectError(translator.errors)
    return result


def _project_name(directory: Path) -> str:
    pkg = directory / "package.json"
    try:
        name = json.loads(pkg.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if isinstance(name, str) and name else directory.resolve().name


_ENV_NAME = re.compile(r"env\('([A-Za-z_][A-Za-z0-9_]*)'")


def write_project(result: ImportResult, out: Path, source: Path) -> list[Path]:
    """Write the project into ``out`` (which must not hold a brazecfg project yet)."""
    if (out / "brazecfg.yml").exists():
        raise BrazecfgError(f"{out} already holds a brazecfg project; choose another --out")
    written: list[Path] = []

    def put(rel: str, text: str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    texts = [(r.path, render_resource(r)) for r in result.resources]
    # A project reads only BRAZECFG_* and BRAZE_* variables and the names it lists under env:
    # (README, Security model): list the ones Grouparoo's secrets come from.
    names = sorted({m for _, text in texts for m in _ENV_NAME.findall(text)
                    if not m.startswith(("BRAZECFG_", "BRAZE_"))})
    settings: dict[str, Any] = {"name": result.project_name,
                                "description": f"Imported from Grouparoo ({source.name})"}
    if names:
        settings["env"] = names
    put("brazecfg.yml", yaml.dump(settings, Dumper=_Dumper, sort_keys=False))
    put(".gitignore", ".brazecfg/\n")
    for path, text in texts:
        put(path, text)
    put("IMPORT.md", render_summary(result, source))
    return written


def import_grouparoo(directory: Path, out: Path) -> tuple[ImportResult, list[Path]]:
    result = translate(directory)
    return result, write_project(result, out, directory)


def summary_lines(result: ImportResult) -> Iterable[str]:
    counts = result.counts()
    plural = {"property": "properties"}
    yield "carried over: " + ", ".join(
        f"{n} {k if n == 1 else plural.get(k, k + 's')}" for k, n in sorted(counts.items()))
    yield f"to do: {len(result.notes)} item{'s' if len(result.notes) != 1 else ''} not carried " \
          "over or changed (each a # TODO(grouparoo) in its file, all in IMPORT.md)"
