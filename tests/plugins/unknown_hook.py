"""A plugin implementing a hook that does not exist (check_pending test)."""
from harness import hookimpl


@hookimpl
def harness_register_methodz(register):
    pass
