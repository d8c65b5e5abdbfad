"""``harness run``: build the run config from the flags (method, dataset, profile, seeds, robustness), then
train and evaluate one seed after the other."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

from harness.cli.common import SEED_LIMIT, plugin_host, seed_value


#: where ``--quick`` results go unless ``--results`` is given: smoke tests never touch ``results/``
QUICK_RESULTS = "work_dirs/quick_results"


def register(sub) -> None:
    run = sub.add_parser("run", help="train (teacher if needed, then student), evaluate, write a result JSON")
    run.add_argument("--method", required=True)
    run.add_argument("--dataset", help="dataset name (default: the config's, i.e. synth)")
    run.add_argument("--data-root", help="dataset root directory (default for synth: generated into the cache)")
    run.add_argument("--config", help="an mmengine config file merged over the method's config, or the name "
                     "of a bundled profile (synth_benchmark, synth_small)")
    run.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", default=[], help="config overrides")
    run.add_argument("--work-dir", help="checkpoints and logs (default: work_dirs/<method>-<profile>-<config hash>/"
                     "seed<N>, one folder per configuration)")
    run.add_argument("--results", help="directory for the result JSON (default: results/; with --quick "
                     f"{QUICK_RESULTS}/, never the committed results)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=seed_value)
    seeds.add_argument("--seeds", type=_seed_list, metavar="S1,S2,...",
                       help="run each seed in turn in this process (one result file per seed), e.g. 0,1,2")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"))
    run.add_argument("--launcher", choices=("none", "pytorch"), help="pytorch: one of several processes started "
                     "by torchrun (DDP; gloo on CPU, NCCL on CUDA; batch sizes are per process)")
    run.add_argument("--quick", action="store_true", help="tiny smoke-test profile (< 1 min on 2 cores)")
    run.add_argument("--no-tensorboard", action="store_true",
                     help="no TensorBoard event files (config key tensorboard=False)")
    run.add_argument("--resume", action="store_true", help="continue from the work dir's last checkpoints")
    run.add_argument("--deterministic", action="store_true",
                     help="torch deterministic algorithms (config key deterministic; see docs/reliability.md)")
    run.add_argument("--eval-robustness", action="store_true",
                     help="after the clean test, evaluate the student on the corruption (and weather) conditions "
                     "(config evaluate.robustness; see docs/robustness.md)")
    run.add_argument("--corruption", metavar="NAME|all", help="robustness conditions: a corruption, 'a,b' or all "
                     "(implies --eval-robustness; `harness list corruptions`)")
    run.add_argument("--severity", metavar="1..5|all", help="robustness severities: 1..5, '1,3' or all "
                     "(implies --eval-robustness)")
    run.set_defaults(handler=cmd_run)


def _seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2``: distinct non-negative integers, in the order given."""
    try:
        seeds = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers (e.g. 0,1,2)") from None
    if any(not 0 <= s < SEED_LIMIT for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: seeds must be distinct non-negative integers below 2**32")
    return seeds


def cmd_run(args) -> int:
    from harness.report import results
    from harness.config.loader import build_run_config
    from harness.pipeline.run import run

    host = plugin_host()
    catalog = host.catalog
    method = catalog.get("methods", args.method)
    results_dir = results.check_writable_dir(args.results or (QUICK_RESULTS if args.quick else "results"), "--results")
    dataset_config = None
    if args.dataset:
        ds = catalog.get("datasets", args.dataset)
        dataset_config = ds.extra.get("config")
    robustness_options = [o for o in args.cfg_options if o.startswith("evaluate.robustness")]
    cfg = build_run_config(
        method=args.method,
        method_config=method.extra.get("config"),
        dataset_config=dataset_config,
        config_file=resolve_profile(args.config),
        quick=args.quick,
        cfg_options=[o for o in args.cfg_options if o not in robustness_options],
    )
    _configure_robustness(cfg, args, robustness_options)
    if args.dataset:
        cfg.data["dataset"] = args.dataset
    if args.data_root:
        root = Path(args.data_root)
        if not root.is_dir():
            from harness.errors import HarnessError

            raise HarnessError(f"option --data-root {root}: no such directory")
        cfg.data["root"] = str(root)
    if args.seed is not None:
        cfg.seed = args.seed
    if args.device:
        cfg.device = args.device
    if args.deterministic:
        cfg.deterministic = True
    if args.no_tensorboard:
        cfg.tensorboard = False
    if args.launcher:
        cfg.launcher = args.launcher
    seeds = args.seeds or [int(cfg.seed)]
    work_dirs = {s: _work_dir(args, cfg, s, several=len(seeds) > 1) for s in seeds}
    for seed, work_dir in work_dirs.items():  # every seed's folders are checked before the first trains
        results.check_writable_dir(work_dir, "--work-dir")
        results.check_result_path(results_dir, results.result_filename(
            {"method": args.method, "datasets": {"test": {"name": cfg.data["dataset"]}}, "profile": cfg.profile,
             "seed": seed}))
    for seed, work_dir in work_dirs.items():
        seed_cfg = copy.deepcopy(cfg)  # a run may fill in its config; each seed starts from the same one
        seed_cfg.seed = seed
        result, path = run(seed_cfg, host, work_dir=work_dir, results_dir=results_dir, resume=args.resume)
        if path is None:  # not rank 0 of a multi-process run: rank 0 reports
            continue
        m = result["metrics"]
        line = " | ".join(f"{role} abs_rel {v['abs_rel']:.4f}" for role, v in m.items() if isinstance(v, dict) and "abs_rel" in v)
        label = f"{args.method} seed {seed}" if len(seeds) > 1 else args.method
        print(f"{label}: {line} ({result['timings']['total_s']:.0f}s) -> {path}")
    return 0


def _work_dir(args, cfg, seed: int, several: bool) -> Path:
    """Default ``work_dirs/<method>-<profile>-<hash of the config>/seed<N>``: one folder per
    configuration (profile, dataset, overrides; the seed and what ``--resume`` may change left out),
    so two configurations never share checkpoints. With several seeds an explicit ``--work-dir``
    gets one ``seed<N>`` folder per seed inside it."""
    if args.work_dir:
        return Path(args.work_dir) / f"seed{seed}" if several else Path(args.work_dir)
    from harness.pipeline.resume import config_digest

    return Path("work_dirs") / f"{args.method}-{cfg.profile}-{config_digest(cfg)}" / f"seed{seed}"


def _configure_robustness(cfg, args, options: list[str]) -> None:
    """``--eval-robustness``/``--corruption``/``--severity``, then the
    ``--cfg-options evaluate.robustness.KEY=VALUE`` items, over the config's ``evaluate.robustness``
    (the key is optional in configs: its defaults live in ``harness.eval.robustness.DEFAULTS``)."""
    from harness.eval import robustness
    from harness.config.loader import parse_cfg_options
    from harness.errors import HarnessError

    current = (cfg.get("evaluate") or {}).get("robustness") or {}
    current = current.to_dict() if hasattr(current, "to_dict") else dict(current)
    if args.eval_robustness or args.corruption or args.severity:
        current["enabled"] = True
    if args.corruption:
        current["corruptions"] = args.corruption
    if args.severity:
        current["severities"] = args.severity
    for key, value in parse_cfg_options(options).items():
        sub = key[len("evaluate.robustness."):] if key.startswith("evaluate.robustness.") else ""
        if not sub or "." in sub or sub not in robustness.DEFAULTS:
            raise HarnessError(f"option --cfg-options: unknown config key {key!r} "
                               f"(known: {', '.join('evaluate.robustness.' + k for k in robustness.DEFAULTS)})")
        current[sub] = value
    if current:
        cfg.evaluate["robustness"] = current
        robustness.settings(cfg)  # validate before any training


def resolve_profile(config: str | None) -> str | None:
    """``--config NAME`` may name a bundled profile in ``harness/config/configs`` instead of a file."""
    from harness.config.loader import CONFIG_DIR

    if config and not Path(config).exists() and (CONFIG_DIR / f"{config}.py").is_file():
        return str(CONFIG_DIR / f"{config}.py")
    return config

