"""A plugin that registers an instance where a class is expected (reliability tests)."""
from harness import hookimpl


@hookimpl
def harness_register_methods(register):
    register("not_a_class", object(), description="an object, not a Strategy class")
