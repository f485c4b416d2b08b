"""The resource graph: who depends on whom, in what order, and each resource's fingerprint.

Edges point from a resource to its parents (what it reads):
source -> app, model; property -> source; group -> model, rule properties, rule groups;
destination -> app, model, mapped properties, synced groups, event sources. A model has no parents (its
primary key is a name; the property depends on the model through its source).

A fingerprint is a short sha256 of the resource's declared (unrendered) data and its parents'
fingerprints, so a changed source changes every property, group and destination that reads it,
while a secret rendered from the environment never reaches a hash.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable, Mapping
from typing import Any

from brazecfg.model.resources import KINDS, Destination, Group, Project, Property, Resource, Source

_KIND_RANK: dict[str, int] = {k: i for i, k in enumerate(KINDS)}


def parents(project: Project, resource: Resource, known: set[str] | None = None) -> list[str]:
    """The refs (``kind/name``) ``resource`` depends on that exist in ``project``, sorted."""
    refs: set[str] = set()
    if isinstance(resource, Source):
        refs |= {f"app/{resource.app}", f"model/{resource.model}"}
    elif isinstance(resource, Property):
        refs.add(f"source/{resource.source}")
    elif isinstance(resource, Group):
        refs.add(f"model/{resource.model}")
        for rule in resource.rules:
            refs.add(f"group/{rule.group}" if rule.group else f"property/{rule.property}")
    elif isinstance(resource, Destination):
        refs |= {f"app/{resource.app}", f"model/{resource.model}"}
        refs |= {f"property/{p}" for p in resource.mapping.values()}
        refs |= {f"property/{p}" for p in resource.custom_attributes.values()}
        refs |= {f"group/{s.group}" for s in resource.subscription_groups}
        refs |= {f"source/{e.source}" for e in resource.events}
        if resource.groups_attribute:
            refs |= {g.ref for g in project.model_groups(resource.model)}
    if known is None:
        known = {r.ref for r in project.all()}
    return sorted(refs & known, key=_sort_key)


def _sort_key(ref: str) -> tuple[int, str]:
    kind, _, name = ref.partition("/")
    return _KIND_RANK.get(kind, len(KINDS)), name


def edges(project: Project) -> dict[str, list[str]]:
    """ref -> the refs it depends on."""
    resources = project.all()
    known = {r.ref for r in resources}
    return {r.ref: parents(project, r, known) for r in resources}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as a path that starts and ends at the same node (a -> b -> a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path: list[str] = [start]
        stack = [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def dependency_order(project: Project) -> list[str]:
    """Every ref, parents before children; ties broken by kind (app, model, source, ...) then
    name, so the order is stable. Raises ValueError on a cycle (the loader rejects those)."""
    graph = edges(project)
    pending = {ref: len(ps) for ref, ps in graph.items()}
    children: dict[str, list[str]] = {ref: [] for ref in graph}
    for ref, ps in graph.items():
        for p in ps:
            children[p].append(ref)
    ready = [(_sort_key(r), r) for r, n in pending.items() if n == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, ref = heapq.heappop(ready)
        out.append(ref)
        for child in children[ref]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, (_sort_key(child), child))
    if len(out) != len(graph):
        cycle = find_cycle(graph) or []
        raise ValueError("dependency cycle: " + " -> ".join(cycle))
    return out


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def fingerprints(project: Project) -> dict[str, str]:
    """``kind/name`` -> 16 hex digits of sha256(canonical JSON of declared data + parents')."""
    graph = edges(project)
    by_ref = {r.ref: r for r in project.all()}
    out: dict[str, str] = {}
    for ref in dependency_order(project):
        payload = {"declared": by_ref[ref].declared,
                   "parents": {p: out[p] for p in graph[ref]}}
        digest = hashlib.sha256(canonical_json(payload).encode("utf-8", "surrogatepass"))
        out[ref] = digest.hexdigest()[:16]
    return out
