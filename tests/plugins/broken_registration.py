"""A plugin whose registration hook raises (fault-isolation test)."""
from harness import hookimpl


@hookimpl
def harness_register_methods(register):
    raise RuntimeError("boom")
