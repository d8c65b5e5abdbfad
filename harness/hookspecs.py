"""Every hook a stereodistill plugin can implement, grouped by phase.

Plugins implement these with the ``harness.hookimpl`` marker. Registration hooks receive a
``register`` callback: the plugin calls it once per thing it contributes, and the host
validates the name and reports a collision between two plugins as one clear error. Wherever a
hook below registers a class (or function), a ``"package.module:Attribute"`` string naming it
works as well and is imported only when the component is first used, so that listing the
plugins (``harness list``) imports none of their torch code.

The spec marker is private to the host; plugin authors only ever import ``hookimpl``.
"""
from __future__ import annotations

import pluggy

PROJECT = "stereodistill"
hookspec = pluggy.HookspecMarker(PROJECT)


# --------------------------------------------------------------------------------------------
# Registration: run once when the plugin manager loads, fill the harness registries.
# --------------------------------------------------------------------------------------------


@hookspec
def harness_register_methods(register):
    """Register distillation methods (strategies).

    Call ``register(name, strategy_cls, *, description, config=None, paper=None, control=None)``
    once per method. ``strategy_cls`` subclasses :class:`harness.Strategy`. ``config`` is the
    path of the method's mmengine config file (it may use ``_base_``); it is merged over the
    harness defaults, so it only needs the keys the method changes. ``paper`` is an optional
    path to a JSON file with the paper's reported numbers. ``control`` names the method's
    like-for-like control run: ``"baseline:{profile}_stereo"`` (another method under a
    profile), ``"self:{profile}_control"`` (the method itself with every distillation term off)
    or ``"self:KEY=VALUE ..."`` (config overrides); see :mod:`harness.config.controls`. Names are lower-case identifiers; registering
    a name another plugin already registered is an error naming both plugins.
    """


@hookspec
def harness_register_teachers(register):
    """Register teacher models.

    Call ``register(name, teacher_cls, *, description)`` once per teacher. A teacher is an
    ``nn.Module`` with ``mode`` (``frozen``/``precomputed``/``online``/``snapshot``/``ema``),
    ``input_keys`` (batch keys its forward reads), ``trainable``, ``feature_specs()``,
    ``forward(batch, student_out=None) -> DepthOutput`` and, when ``trainable``,
    ``self_loss(batch, out) -> dict[str, Tensor]`` which the harness minimises to train it
    before any student sees it (the result is cached by a hash of its config and data).
    """


@hookspec
def harness_register_students(register):
    """Register student models.

    Call ``register(name, student_cls, *, description)``. A student is an ``nn.Module`` with
    ``feature_specs()``, ``forward(image, cond=None) -> DepthOutput`` (multi-scale ``disp`` /
    ``depth``, features named by stride) and ``predict(image) -> depth``; every method is
    evaluated through ``predict`` of the same student class.
    """


@hookspec
def harness_register_datasets(register):
    """Register datasets.

    Call ``register(name, dataset_cls, *, description, prepare=None, config=None)``.
    ``dataset_cls(root, split, height, width, need, seed, **split_cfg)`` is a map-style torch
    dataset with ``provides`` (the batch keys it can produce), ``split``, ``split_hash``,
    ``gt_source``, ``fingerprint``, ``eval_gt(i)`` (native-resolution GT for evaluation) and
    ``mean_depth_map()`` (the full contract: docs/plugins.md, "The dataset contract").
    ``config`` is the dataset's mmengine config: under ``--dataset`` its ``data`` section
    replaces the default one (its ``protocol`` section is the evaluation protocol).
    ``prepare(data_cfg, cache_dir, progress) -> root`` is optional: it makes the data available
    when no ``--data-root`` is given (the built-in ``synth`` set generates itself into the cache).
    """


@hookspec
def harness_register_metrics(register):
    """Register extra per-image depth metrics.

    Call ``register(name, fn, *, description, lower_is_better=True)`` where
    ``fn(pred, gt, mask) -> Tensor[B]`` receives ``B x 1 x H x W`` metric depth maps after the
    protocol's scaling and clamping and a boolean valid mask, and returns one value per image.
    Built-in metrics (abs_rel ... silog) are registered the same way.
    """


# --------------------------------------------------------------------------------------------
# Run events: observe or adjust a run without touching core.
# --------------------------------------------------------------------------------------------


@hookspec
def harness_configure_run(cfg):
    """Inspect or adjust the fully merged mmengine ``Config`` before the run reads any of it.

    Called once per run after every layer (``--config``, ``--quick``, ``--cfg-options``, the
    CLI flags) is applied and before the run reads its device, caches, data or models, so an
    edit here is what the run uses (and records). Mutate ``cfg`` in place; the return value is
    ignored. Raise ``harness.HarnessError`` to refuse a configuration with a one-line message.
    It is called for every method: what one method derives from the run (its stages' epochs,
    the teacher type) belongs in :meth:`harness.Strategy.on_run_start` instead.
    """


@hookspec
def harness_result_written(result, path):
    """Called after a result JSON has been written atomically to ``path``.

    ``result`` is the dict that was written (see ``harness.report.results`` for the schema). Use it to
    export results elsewhere; exceptions here are reported as warnings, never lose the file.
    """
