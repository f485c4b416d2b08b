"""brazecfg: Braze configuration as code.

The library flow, in the order the CLI calls it::

    project = load_project(path)          # files -> validated, typed resources
    plan = make_plan(project)             # warehouse + ledger -> data-level plan (writes nothing)
    result = apply_plan(project, plan)    # Braze client -> ledger commits of what Braze confirmed

Everything here is importable without the CLI; the CLI only renders and maps errors to exit codes.
"""

from __future__ import annotations

__version__ = "0.1.0"
