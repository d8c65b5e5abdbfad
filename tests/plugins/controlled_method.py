"""Methods with declared controls for the control tests: ``controlled`` (control: the baseline
of the same profile) and ``self_controlled`` (itself with its L1 term scaled down)."""
from harness import hookimpl
from tests.plugins.sample_method import SampleStrategy


@hookimpl
def harness_register_methods(register):
    register("controlled", SampleStrategy, description="Sample method compared with the baseline",
             control="baseline:{profile}")
    register("self_controlled", SampleStrategy, description="Sample method compared with itself",
             control="self:method.loss_weights.l1=0.5")
