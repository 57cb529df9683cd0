"""Control methods, one module per concern.

Each module has a `register(registry, ...)` function that adds its
handlers to a Registry, taking the services its handlers use (the job
registry now, the array and the store as they land). A handler is
`handler(call, *, param: type = default)`, as raidd.control.registry
describes; its docstring's first line is the summary `methods` lists, and
docs/PROTOCOL.md documents its params, result and access. raidctl's
subcommands mirror these modules.
"""

from raidd.control.methods import (
    array_jobs,
    audit,
    backups,
    introspection,
    jobs,
    keys,
    members,
    restore,
    status,
)

__all__ = [
    "array_jobs",
    "audit",
    "backups",
    "introspection",
    "jobs",
    "keys",
    "members",
    "restore",
    "status",
]
