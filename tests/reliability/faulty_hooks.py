"""A plugin whose run-event hooks raise (reliability tests); registers method ``faulty``."""
from harness import hookimpl
from tests.reliability.sample_plugins import NoisyStrategy


class FaultyStrategy(NoisyStrategy):
    """Same as noisy (its plugin's hooks are what fail)."""


@hookimpl
def harness_register_methods(register):
    register("faulty", FaultyStrategy, description="noisy, from a plugin whose run hooks raise")


@hookimpl
def harness_configure_run(cfg):
    raise KeyError("configure went wrong")


@hookimpl
def harness_result_written(result, path):
    raise OSError("export target unreachable")
