"""A two-stage method for the schedule tests (registers ``two_stage``): stage ``B`` continues
stage ``A``'s optimiser state and LR schedule (``reset_schedule=False``)."""
from harness import Stage, hookimpl
from tests.plugins.sample_method import SampleStrategy


class TwoStageStrategy(SampleStrategy):
    def stages(self):
        return [Stage("A", epochs=1), Stage("B", epochs=1, reset_schedule=False)]


@hookimpl
def harness_register_methods(register):
    register("two_stage", TwoStageStrategy, description="Two stages sharing one schedule (tests)")
