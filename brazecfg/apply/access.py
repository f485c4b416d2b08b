"""Check each Braze app's credentials before anyone approves a plan.

A wrong API key, or an endpoint of another instance, used to surface only at the first write,
after a person had read and approved the plan. Apply now calls one read-only endpoint per app
it will write to, before the confirmation prompt and before any write:
``/users/export/ids`` with one throwaway external id (Braze answers that it does not know it).

- 401 (the key is refused) and 404 (not a Braze REST endpoint): an error, in one line that
  names the app.
- 403 (the key lacks ``users.export.ids``): an error for an enrich destination, which needs
  that permission; for sync and additive destinations only a warning, since they never call
  it. Braze answers 401 to a key it does not know and 403 to a key without the permission, so
  a 403 already proves the key itself is right.
"""

from __future__ import annotations

from collections.abc import Callable

from brazecfg.braze.client import BrazeClient
from brazecfg.errors import BrazeError
from brazecfg.model.resources import App, Project
from brazecfg.plan.definition import Plan

PROBE_ID = "brazecfg-access-check"


def check_access(project: Project, plan: Plan, clients: Callable[[App], BrazeClient], *,
                 warn: Callable[[str], None] | None = None) -> None:
    """Raise a one-line BrazeError naming the first app whose credentials do not work."""
    needs_export: dict[str, bool] = {}
    for d in plan.destinations:
        if not (d.changes or d.state_changes):
            continue
        app = project.destinations[d.destination].app
        needs_export[app] = needs_export.get(app, False) or d.mode == "enrich"
    for name in sorted(needs_export):
        client = clients(project.apps[name])
        try:
            client.post("/users/export/ids", {"external_ids": [PROBE_ID],
                                              "fields_to_export": ["external_id"]})
        except BrazeError as exc:
            if exc.status == 403 and not needs_export[name]:
                if warn is not None:
                    warn(f"warning: app/{name}: the API key lacks users.export.ids (403); "
                         "the key itself is valid, and this plan does not need that permission")
                continue
            raise
