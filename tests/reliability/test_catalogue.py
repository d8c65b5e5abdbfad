"""The bad-input and fault catalogue of docs/reliability.md, one parametrised case each.

Every case runs the CLI in-process (``main(argv)``, stderr captured) and asserts: the exit code,
exactly one ``harness: error:`` line (or, for skip cases, the ``harness: warning:`` line and exit 0),
that the line names the file or option, no traceback, and that a results folder holding a result
from before is byte-identical afterwards. Tiny generated data; all but a few cases fail before
training. Cases that need a finished run share one quick run (``trained``).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from harness.report import results
from tests.data_real import fixtures
from tests.reliability.conftest import run_cli

PLUGINS = "tests.reliability.sample_plugins,tests.reliability.catalogue_plugins"
QUICK = ["run", "--method", "baseline", "--quick"]
KITTI_SPLIT = [(d, f, "l") for d in fixtures.DATES for f in range(1, 7)]


@dataclass
class Case:
    id: str
    argv: Callable  # (ctx) -> argv list; may write the files the case needs
    code: int = 2
    fragments: tuple = ()  # (ctx) -> strings, or plain strings; all must be in the line
    kind: str = "error"  # "error": one error line; "warning": exit 0 and one warning line; "ok": exit 0
    check: Callable | None = None  # (ctx, stdout, stderr) -> None: extra assertions
    trained: bool = False  # needs the shared finished run


class Ctx:
    """Per-case folders: ``tmp``, ``res`` (a results folder with one earlier result), the shared
    data cache, a fresh KITTI fixture copy on demand and the shared finished run."""

    def __init__(self, tmp: Path, shared):
        self.tmp, self.shared = tmp, shared
        self.res = tmp / "res"
        self.res.mkdir()
        results.write_result(_good_result(0), self.res)
        self._kitti = None

    def run(self, *cfg_options: str, method: str = "baseline", extra=()) -> list:
        return ["run", "--method", method, "--quick", "--results", self.res, "--work-dir", self.tmp / "w", *extra,
                "--cfg-options", "progress=False", *cfg_options]

    @property
    def kitti(self) -> Path:
        if self._kitti is None:
            self._kitti = self.tmp / "kitti"
            shutil.copytree(self.shared["kitti"], self._kitti)
        return self._kitti

    def kitti_run(self, *cfg_options: str, split: Path | None = None) -> list:
        split = split or self.kitti / "s.txt"
        return self.run(f"data.train.split={split}", f"data.val.split={split}", f"data.test.split={split}",
                        *cfg_options, extra=("--dataset", "kitti", "--data-root", self.kitti))

    def frame(self, sub: str, frame: int = 1, date: str = "2011_09_26") -> Path:
        return self.kitti / date / fixtures.DRIVES[date] / sub / f"{frame:010d}{'.bin' if 'velodyne' in sub else '.png'}"

    def work_copy(self) -> Path:
        """A copy of the shared finished run's work dir (cases may damage it)."""
        dst = self.tmp / "trained"
        shutil.copytree(self.shared["trained"], dst)
        return dst

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def result_in_res(self, name: str, **changes) -> Path:
        data = dict(_good_result(1), **changes)
        path = self.res / name
        path.write_text(json.dumps(data, allow_nan=True))
        return path


def _good_result(seed, abs_rel=None):
    return {"schema_version": 1, "method": "baseline", "seed": seed, "profile": "quick",
            "protocol": {"id": "p", "dataset": "synth", "split": "test"}, "datasets": {"test": {"name": "synth"}},
            "metrics": {"student": {"abs_rel": abs_rel if abs_rel is not None else 0.1 + seed / 100, "a1": 0.9}}}


def _metric(value):
    return {"metrics": {"student": {"abs_rel": value, "a1": 0.9}}}


def _truncate(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _drop_calib_key(c: Ctx, key: str, replace_with: str | None = None) -> None:
    calib = c.kitti / "2011_09_26" / "calib_cam_to_cam.txt"
    lines = calib.read_text().splitlines()
    out = [(f"{key}: {replace_with}" if replace_with else None) if ln.startswith(key + ":") else ln for ln in lines]
    calib.write_text("\n".join(ln for ln in out if ln is not None) + "\n")


def _gt_8bit(c: Ctx) -> Path:
    gt = c.kitti / "data_depth_annotated" / "train" / fixtures.DRIVES["2011_09_26"] / "proj_depth" / "groundtruth"
    path = gt / "image_02" / f"{5:010d}.png"
    cv2.imwrite(str(path), np.full((267, 881), 7, np.uint8))
    return path


def _resume_args(c: Ctx, *cfg_options, method="baseline", extra=()):
    work = c.work_copy()
    return ["run", "--method", method, "--quick", "--results", c.res, "--work-dir", work, "--resume", *extra,
            "--cfg-options", "progress=False", "evaluate.teacher=False", *cfg_options]


def _finished_resume(c: Ctx):
    # the shared run's own results folder and work dir: a resume must not rewrite its result
    c.shared["resumed_before"] = {p.name: p.read_bytes() for p in c.shared["trained_res"].iterdir()}
    return ["run", "--method", "baseline", "--quick", "--results", c.shared["trained_res"], "--work-dir",
            c.shared["trained"], "--resume", "--cfg-options", "progress=False", "evaluate.teacher=False"]


def _check_finished_resume(c: Ctx, out, err):
    after = {p.name: p.read_bytes() for p in c.shared["trained_res"].iterdir()}
    assert after == c.shared["resumed_before"], "a resume of a finished run rewrote its result"


def _predict_copy(c: Ctx):
    work = c.work_copy()
    (work / "student" / "last_checkpoint").write_text(str(c.shared["trained"] / "student" / "epoch_1.pth"))
    img = c.tmp / "img.png"
    cv2.imwrite(str(img), np.zeros((64, 192, 3), np.uint8))
    c.shared["copied"] = work
    return ["predict", "--run", work, "--input", img, "--out", c.tmp / "pred", "--quiet"]


def _check_predict_copy(c: Ctx, out, err):
    from harness.deploy.predict import resolve_checkpoint

    work = c.shared["copied"]
    assert resolve_checkpoint(str(work), None)[0] == work / "student" / "epoch_1.pth"


def _predict_no_marker(c: Ctx):
    work = c.work_copy()
    (work / "student" / "last_checkpoint").unlink()
    img = c.tmp / "img.png"
    cv2.imwrite(str(img), np.zeros((64, 192, 3), np.uint8))
    return ["predict", "--run", work, "--input", img, "--out", c.tmp / "pred", "--quiet"]


def _export_full_disk(c: Ctx):
    real = Path.write_bytes

    def full(self, data):
        if self.name.endswith(".tmp"):
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    c.shared["monkeypatch"].setattr(Path, "write_bytes", full)
    c.shared["export_dir"] = c.tmp / "exp"
    c.shared["export_dir"].mkdir()
    return ["export", "--run", c.work_copy(), "--format", "torchscript", "--out", c.shared["export_dir"] / "s.pt",
            "--runs", "1"]


def _check_export_full_disk(c: Ctx, out, err):
    assert list(c.shared["export_dir"].iterdir()) == [], "a temp file or half export was left"


def _run_record_kept(c: Ctx):
    work = c.tmp / "w"
    work.mkdir()
    (work / "run_config.json").write_text('{"kept": true}')
    return c.run("schedule.epochs=two")


def _check_run_record_kept(c: Ctx, out, err):
    assert (c.tmp / "w" / "run_config.json").read_text() == '{"kept": true}'


def _synth_full_cache(c: Ctx):
    from harness.data import synth

    def full(out, **kw):
        Path(out).mkdir(parents=True)
        (Path(out) / "half.png").write_bytes(b"x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out) / "half.png"))

    c.shared["monkeypatch"].setattr(synth, "generate", full)
    c.shared["monkeypatch"].setenv("STEREODISTILL_CACHE", str(c.tmp / "fullcache"))
    return c.run()


def _check_no_partial(c: Ctx, out, err):
    assert not list((c.tmp / "fullcache" / "synth").glob("*.partial-*"))


def _long_results(c: Ctx):
    deep = c.tmp
    while len(str(deep)) < 3800:
        deep = deep / ("d" * 200)
    deep = deep / ("e" * (4040 - len(str(deep)) - 1))  # the folder can exist; the result file cannot
    return ["run", "--method", "baseline", "--quick", "--results", deep, "--work-dir", c.tmp / "w"]


CASES = [
    # -- --cfg-options and config values: refused before anything is built ----------------------------
    Case("cfg-unbalanced-brackets", lambda c: c.run("a.b=[1,"), 2, ("--cfg-options", "a.b=[1,", "cannot be parsed")),
    Case("epochs-not-a-number", lambda c: c.run("schedule.epochs=abc"), 2, ("schedule.epochs='abc'", "integer >= 1")),
    Case("epochs-negative", lambda c: c.run("schedule.epochs=-1"), 2, ("schedule.epochs=-1", "integer >= 1")),
    Case("epochs-zero", lambda c: c.run("schedule.epochs=0"), 2, ("schedule.epochs=0",)),
    Case("epochs-fractional", lambda c: c.run("schedule.epochs=1.5"), 2, ("schedule.epochs=1.5", "integer")),
    Case("epochs-misspelt-nested", lambda c: c.run("schedule.epoch=3"), 2,
         ("config schedule.epoch: unknown key", "did you mean schedule.epochs?")),
    Case("batch-size-zero", lambda c: c.run("schedule.batch_size=0"), 2, ("schedule.batch_size=0",)),
    Case("optimizer-unknown", lambda c: c.run("schedule.optimizer.type=Nope"), 2,
         ("schedule.optimizer.type='Nope'", "not a known optimizer")),
    Case("optimizer-option-unknown", lambda c: c.run("schedule.optimizer.momentun=0.9"), 2,
         ("schedule.optimizer.momentun", "unknown key")),
    Case("lr-not-a-number", lambda c: c.run("schedule.optimizer.lr=fast"), 2, ("schedule.optimizer.lr='fast'", "> 0")),
    Case("lr-nan", lambda c: c.run("schedule.optimizer.lr=nan"), 2, ("schedule.optimizer.lr=nan", "finite")),
    Case("lr-negative", lambda c: c.run("schedule.optimizer.lr=-1"), 2, ("schedule.optimizer.lr=-1",)),
    Case("input-size-scalar", lambda c: c.run("data.input_size=5"), 2, ("data.input_size=5", "multiples of 32")),
    Case("input-size-not-32", lambda c: c.run("data.input_size=[50,96]"), 2, ("data.input_size", "multiples of 32")),
    Case("num-workers-negative", lambda c: c.run("num_workers=-1"), 2, ("num_workers=-1", ">= 0")),
    Case("schedule-not-a-section", lambda c: c.run("schedule=5"), 2, ("schedule=5", "section")),
    Case("seed-in-config-negative", lambda c: c.run("seed=-1"), 2, ("seed=-1", "[0, 4294967295]")),
    Case("device-unknown", lambda c: c.run("device=gpu"), 2, ("device='gpu'",)),
    Case("amp-unknown", lambda c: c.run("schedule.amp=fp8"), 2, ("schedule.amp='fp8'",)),
    Case("eval-batch-size-zero", lambda c: c.run("evaluate.batch_size=0"), 2, ("evaluate.batch_size=0",)),
    Case("teacher-epochs-zero", lambda c: c.run("teacher_train.epochs=0"), 2, ("teacher_train.epochs=0",)),
    Case("teacher-flip-mode-unknown", lambda c: c.run("teacher_train.flip_mode=spin"), 2, ("teacher_train.flip_mode",)),
    Case("sync-bn-unknown", lambda c: c.run("dist.sync_bn=apex"), 2, ("dist.sync_bn='apex'",)),
    Case("teacher-type-unknown", lambda c: c.run("teacher.type=nope"), 2, ("teacher.type='nope'", "unknown teacher")),
    Case("student-option-misspelt", lambda c: c.run("student.base_widht=8"), 2,
         ("student.base_widht", "did you mean student.base_width?")),
    Case("method-option-misspelt", lambda c: c.run("method.supervison=gt"), 2,
         ("method.supervison", "did you mean method.supervision?")),
    Case("method-option-wrong-type", lambda c: c.run("method.eval_baseline=far"), 2, ("method.eval_baseline='far'",)),
    Case("loss-weight-unknown-term", lambda c: c.run("method.loss_weights.gtt=1"), 2,
         ("method.loss_weights.gtt", "did you mean method.loss_weights.gt?")),
    Case("loss-weight-negative", lambda c: c.run("method.loss_weights.gt=-1"), 2, ("method.loss_weights.gt=-1",)),
    Case("dataset-option-misspelt", lambda c: c.run("data.train.flip_mod=swap"), 2,
         ("data.train.flip_mod", "did you mean data.train.flip_mode?")),
    Case("generator-option-misspelt", lambda c: c.run("data.generate.frame=5"), 2,
         ("data.generate.frame", "did you mean data.generate.frames?")),
    Case("protocol-option-unknown", lambda c: c.run("data.protocol.crops=garg"), 2, ("data.protocol.crops",)),
    Case("scales-beyond-the-student", lambda c: c.run("method.scales=[0,1,2,3,4]"), 2,
         ("method 'baseline'", "scale(s) [0, 1, 2, 3]", "[4]", "method.scales")),
    # -- config files -------------------------------------------------------------------------------
    Case("config-file-schedule-scalar", lambda c: c.run(extra=("--config", c.write("s5.py", "schedule = 5\n"))), 2,
         ("schedule=5", "section")),
    Case("config-file-unknown-key", lambda c: c.run(extra=("--config", c.write("u.py", "schedule = dict(epochz=2)\n"))),
         2, ("schedule.epochz", "did you mean schedule.epochs?")),
    Case("config-file-epochs-string", lambda c: ["run", "--method", "baseline", "--results", c.res, "--work-dir",
                                                 c.tmp / "w", "--config", c.write("t.py", 'schedule = dict(epochs="two")\n')],
         2, ("schedule.epochs='two'",)),
    Case("config-file-missing-import", lambda c: c.run(extra=("--config", c.write("i.py", "import nope_missing_module\n"))),
         2, ("option --config", "i.py", "nope_missing_module")),
    Case("config-file-scheduler-option", lambda c: c.run(extra=("--config", c.write(
        "ps.py", "schedule = dict(param_scheduler=[dict(type='CosineAnnealingLR', eta_mn=0)])\n"))), 2,
         ("schedule.param_scheduler[0].eta_mn", "did you mean schedule.param_scheduler[0].eta_min?")),
    Case("config-file-scheduler-unknown", lambda c: c.run(extra=("--config", c.write(
        "pu.py", "schedule = dict(param_scheduler=[dict(type='Nope')])\n"))), 2,
         ("schedule.param_scheduler[0].type='Nope'", "not a known LR scheduler")),
    Case("run-record-not-overwritten", _run_record_kept, 2, ("schedule.epochs='two'",), check=_check_run_record_kept),
    # -- seeds --------------------------------------------------------------------------------------
    Case("seed-negative", lambda c: [*QUICK, "--seed", "-1"], 2, ("--seed", "-1")),
    Case("seed-too-large", lambda c: [*QUICK, "--seed", "1099511627776"], 2, ("--seed", "1099511627776", "2**32")),
    Case("seeds-too-large", lambda c: [*QUICK, "--seeds", f"0,{2**32}"], 2, ("--seeds",)),
    Case("synth-seed-negative", lambda c: ["data", "synth", "--out", c.tmp / "s", "--seed", "-1"], 2, ("--seed",)),
    Case("corrupt-seed-too-large", lambda c: ["data", "corrupt", "--input", "x.png", "--out", c.tmp / "o.png",
                                              "--seed", str(2**40)], 2, ("--seed",)),
    # -- data files, found by the checks before training (KITTI fixture) ----------------------------
    Case("kitti-truncated-velodyne", lambda c: (_truncate(c.frame("velodyne_points/data"), 1001), c.kitti_run())[1], 2,
         ("0000000001.bin", "multiple of 16")),
    Case("kitti-calib-missing-p-rect", lambda c: (_drop_calib_key(c, "P_rect_02"), c.kitti_run())[1], 2,
         ("calib_cam_to_cam.txt", "P_rect_02")),
    Case("kitti-calib-non-numeric", lambda c: (_drop_calib_key(c, "R_rect_00", "1 0 x 0 1 0 0 0 1"), c.kitti_run())[1],
         2, ("calib_cam_to_cam.txt", "R_rect_00")),
    Case("kitti-gt-8-bit", lambda c: (_gt_8bit(c), c.kitti_run(
        "data.train.gt_source=dense", "data.val.gt_source=dense", "data.test.gt_source=dense",
        split=fixtures.kitti_split(c.kitti / "g.txt", [("2011_09_26", f, "l") for f in (5, 6)])))[1], 2,
         ("0000000005.png", "16-bit")),
    Case("kitti-image-zero-bytes-train", lambda c: (c.frame("image_02/data").write_bytes(b""), c.kitti_run())[1], 2,
         ("0000000001.png",)),
    Case("kitti-image-truncated-test", lambda c: (_truncate(c.frame("image_02/data", 3, "2011_09_30"), 300), c.kitti_run(
        f"data.test.split={fixtures.kitti_split(c.kitti / 't.txt', [('2011_09_30', 3, 'l')])}"))[1], 2,
         ("0000000003.png",)),
    Case("kitti-image-right-missing", lambda c: (c.frame("image_03/data", 2).unlink(), c.kitti_run())[1], 2,
         ("image_03", "0000000002")),
    Case("kitti-split-garbage-line", lambda c: c.kitti_run(split=c.write("garbage.txt", "\x00\x01 not a frame line\n")),
         2, ("garbage.txt",)),
    Case("kitti-split-missing-frame", lambda c: c.kitti_run(split=fixtures.kitti_split(
        c.kitti / "m.txt", [("2011_09_26", 1, "l"), ("2011_09_26", 77, "l")])), 2, ("0000000077", "m.txt")),
    Case("kitti-split-empty-test", lambda c: c.kitti_run(f"data.test.split={c.write('empty.txt', '')}"), 2,
         ("empty.txt",)),
    Case("data-root-absent", lambda c: c.run(extra=("--data-root", c.tmp / "absent")), 2,
         ("option --data-root", "no such directory")),
    # -- results and leaderboard ----------------------------------------------------------------------
    Case("leaderboard-method-null", lambda c: (c.result_in_res("nullmethod.json", method=None),
                                               ["leaderboard", "--results", c.res, "--no-cost"])[1],
         0, ("nullmethod.json", "method is None"), kind="warning"),
    Case("leaderboard-seed-string", lambda c: (c.result_in_res("strseed.json", seed="a"),
                                               ["leaderboard", "--results", c.res, "--no-cost"])[1],
         0, ("strseed.json", "seed is 'a'"), kind="warning"),
    Case("leaderboard-metric-nan", lambda c: (c.result_in_res("nan.json", **_metric(float("nan"))),
                                              ["leaderboard", "--results", c.res, "--no-cost"])[1],
         0, ("nan.json", "metrics.student.abs_rel is nan"), kind="warning"),
    Case("leaderboard-metric-string", lambda c: (c.result_in_res("bad.json", **_metric("bad")),
                                                 ["leaderboard", "--results", c.res, "--no-cost"])[1],
         0, ("bad.json", "metrics.student.abs_rel is 'bad'"), kind="warning"),
    Case("leaderboard-out-is-a-directory", lambda c: ["leaderboard", "--results", c.res, "--no-cost", "--out", c.tmp],
         2, ("option --out", "is a directory")),
    Case("results-path-too-long", _long_results, 2, ("option --results", "more than the file system allows")),
    # -- data generation ------------------------------------------------------------------------------
    Case("synth-empty-splits", lambda c: ["data", "synth", "--out", c.tmp / "s", "--frames", "8",
                                          "--frames-per-drive", "100", "--height", "32", "--width", "32"],
         0, ("--frames-per-drive", "val, test"), kind="warning"),
    Case("synth-full-cache-disk", _synth_full_cache, 1, ("half.png", "No space left on device"), check=_check_no_partial),
    # -- plugins ----------------------------------------------------------------------------------------
    Case("plugin-exits-on-import", lambda c: (c.shared["monkeypatch"].setenv(
        "STEREODISTILL_PLUGINS", "tests.reliability.exits_on_import"), ["list", "methods"])[1],
         0, ("exits_on_import", "SystemExit"), kind="warning"),
    Case("plugin-interrupts-on-import", lambda c: (c.shared["monkeypatch"].setenv(
        "STEREODISTILL_PLUGINS", "tests.reliability.interrupts_on_import"), ["list", "methods"])[1],
         0, ("interrupts_on_import", "KeyboardInterrupt"), kind="warning"),
    Case("plugin-registers-non-class", lambda c: (c.shared["monkeypatch"].setenv(
        "STEREODISTILL_PLUGINS", "tests.reliability.registers_non_class"), ["list", "methods"])[1],
         2, ("not_a_class", "registered as classes")),
    Case("strategy-raises-at-step-3", lambda c: c.run("evaluate.teacher=False", "evaluate.mean_depth=False",
                                                      "schedule.batch_size=2", method="raise_at"), 1,
         ("internal error in plugin module tests.reliability.catalogue_plugins", "RuntimeError", "--debug",
          "traceback is in")),
    Case("compute-loss-returns-dict", lambda c: c.run("evaluate.teacher=False", method="returns_dict"), 2,
         ("compute_loss returned a dict", "LossDict")),
    Case("loss-term-without-weight", lambda c: c.run("evaluate.teacher=False", method="extra_term"), 2,
         ("method.loss_weights.extra",)),
    # -- resume, work dirs, exports: on a finished quick run ----------------------------------------------
    Case("resume-other-lr", lambda c: _resume_args(c, "schedule.optimizer.lr=0.01"), 2,
         ("option --resume", "schedule.optimizer.lr=0.001", "0.01", "start fresh"), trained=True),
    Case("resume-other-seed", lambda c: _resume_args(c, extra=("--seed", "5")), 2, ("option --resume", "seed=0", "seed=5"),
         trained=True),
    Case("resume-other-method", lambda c: _resume_args(c, method="noisy"), 2, ("option --resume", "method.type"),
         trained=True),
    Case("resume-garbage-run-record", lambda c: (lambda a: ((Path(a[a.index("--work-dir") + 1]) / "run_config.json")
                                                            .write_bytes(b"\xff\xfe\x00"), a)[1])(_resume_args(c)),
         2, ("option --resume", "run_config.json", "cannot be read"), trained=True),
    Case("resume-garbage-last-checkpoint", lambda c: (lambda a: ((Path(a[a.index("--work-dir") + 1]) / "student" /
                                                                 "last_checkpoint").write_bytes(b"\xff\xfe\x00\x81"),
                                                                a)[1])(_resume_args(c, "schedule.optimizer.lr=0.5")),
         2, ("option --resume", "schedule.optimizer.lr"), trained=True),
    Case("resume-finished-run-rewrites-nothing", _finished_resume, 0, kind="ok", check=_check_finished_resume,
         trained=True),
    Case("predict-copied-work-dir-uses-its-own-checkpoint", _predict_copy, 0, kind="ok", check=_check_predict_copy,
         trained=True),
    Case("predict-without-last-checkpoint", _predict_no_marker, 0, kind="ok", trained=True),
    Case("export-full-disk", _export_full_disk, 1, ("option --out", "s.pt", "No space left on device"),
         check=_check_export_full_disk, trained=True),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogue")
    kitti = root / "kitti"
    fixtures.write_kitti(kitti, points_per_frame=500)
    fixtures.kitti_split(kitti / "s.txt", KITTI_SPLIT)
    return {"kitti": kitti, "cache": root / "cache", "root": root}


@pytest.fixture(scope="module")
def trained(shared):
    """One finished quick baseline run (no teacher): its work dir and results folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEREODISTILL_CACHE", str(shared["cache"]))
        mp.setenv("STEREODISTILL_PLUGINS", PLUGINS)
        work, res = shared["root"] / "trained", shared["root"] / "trained_res"
        from harness.cli.main import main

        code = main(["run", "--method", "baseline", "--quick", "--work-dir", str(work), "--results", str(res),
                     "--cfg-options", "progress=False", "evaluate.teacher=False"])
        assert code == 0
    return work, res


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_catalogue(case: Case, shared, request, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STEREODISTILL_CACHE", str(shared["cache"]))
    monkeypatch.setenv("STEREODISTILL_PLUGINS", PLUGINS)
    monkeypatch.chdir(tmp_path)  # default work dirs and logs stay in the test's folder
    context = dict(shared, monkeypatch=monkeypatch)
    if case.trained:
        context["trained"], context["trained_res"] = request.getfixturevalue("trained")
    c = Ctx(tmp_path, context)
    argv = case.argv(c)
    before = _snapshot(c.res)
    code, out, err = run_cli(capsys, *argv)
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("harness: error: ")]
    warnings = [ln for ln in err.splitlines() if ln.startswith("harness: warning: ")]
    assert code == case.code, (code, err[-2000:])
    if case.kind == "error":
        assert len(errors) == 1, err
        line = errors[0]
    elif case.kind == "warning":
        assert not errors, err
        matching = [w for w in warnings if all(f in w for f in case.fragments)]
        assert len(matching) == 1, err
        line = matching[0]
    else:
        assert not errors, err
        line = ""
    for fragment in case.fragments:
        assert fragment in line, line
    if case.check:
        case.check(c, out, err)
    assert _snapshot(c.res) == before, "the results folder changed"


def test_the_catalogue_has_at_least_60_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


def test_files_are_written_with_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = results.write_result(_good_result(0), tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_modified_copy_of_the_data_is_other_data(tmp_path):
    from harness.pipeline.teacher_cache import files_fingerprint

    fixtures.write_kitti(tmp_path / "a", points_per_frame=50)
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copy2)
    assert files_fingerprint(tmp_path / "a") == files_fingerprint(tmp_path / "b")
    velo = tmp_path / "b" / "2011_09_26" / fixtures.DRIVES["2011_09_26"] / "velodyne_points" / "data" / "0000000001.bin"
    velo.write_bytes(velo.read_bytes() + struct.pack("<4f", 1, 2, 3, 0))
    assert files_fingerprint(tmp_path / "a") != files_fingerprint(tmp_path / "b")


def test_default_work_dirs_differ_per_configuration(tmp_path):
    from types import SimpleNamespace

    from harness.cli.run import _work_dir
    from harness.config.loader import build_run_config

    args = SimpleNamespace(work_dir=None, method="baseline")
    quick = build_run_config(method="baseline", method_config=None, quick=True)
    longer = build_run_config(method="baseline", method_config=None, quick=True, cfg_options=["schedule.epochs=3"])
    default = build_run_config(method="baseline", method_config=None)
    dirs = {_work_dir(args, cfg, 0, several=False) for cfg in (quick, longer, default)}
    assert len(dirs) == 3
    assert _work_dir(args, quick, 0, False) == _work_dir(args, build_run_config(
        method="baseline", method_config=None, quick=True, cfg_options=["progress=False"]), 0, False)
