"""Plugins that break the strategy contract on purpose (the catalogue of tests/reliability/test_catalogue.py).

* ``raise_at``: raises a ``RuntimeError`` at training step 3 (a bug in a third-party strategy);
* ``returns_dict``: ``compute_loss`` returns a plain dict instead of a ``LossDict``;
* ``extra_term``: returns a term its ``default_loss_weights`` does not name.
"""
from harness import hookimpl
from tests.reliability.sample_plugins import NoisyStrategy


class RaiseAtStrategy(NoisyStrategy):
    """``noisy`` that fails at step 3."""

    def compute_loss(self, batch, s_out, t_out, ctx):
        if ctx.step >= 2:  # 0-based before the step counter moves: the third step
            raise RuntimeError("strategy state went wrong at step 3")
        return super().compute_loss(batch, s_out, t_out, ctx)


class ReturnsDictStrategy(NoisyStrategy):
    """Returns ``{"l1": ...}`` instead of ``self.weighted(...)``."""

    def compute_loss(self, batch, s_out, t_out, ctx):
        return {"l1": self.noisy_l1(batch, s_out)}


class ExtraTermStrategy(NoisyStrategy):
    """Weights only ``l1`` but also returns ``extra``."""

    def compute_loss(self, batch, s_out, t_out, ctx):
        value = self.noisy_l1(batch, s_out)
        return self.weighted({"l1": value, "extra": value})


@hookimpl
def harness_register_methods(register):
    register("raise_at", RaiseAtStrategy, description="noisy that raises at step 3 (reliability tests)")
    register("returns_dict", ReturnsDictStrategy, description="compute_loss returns a dict (reliability tests)")
    register("extra_term", ExtraTermStrategy, description="an unweighted loss term (reliability tests)")

