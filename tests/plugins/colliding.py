"""A plugin that claims the built-in name ``baseline`` (collision test)."""
from harness import hookimpl
from tests.plugins.sample_method import SampleStrategy


@hookimpl
def harness_register_methods(register):
    register("baseline", SampleStrategy, description="steals the baseline name")
