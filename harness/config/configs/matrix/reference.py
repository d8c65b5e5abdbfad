# The reference leaderboard of the synthetic benchmark (results/README.md), run by
# `harness matrix harness/config/configs/matrix/reference.py` (= `tox -e matrix`).
#
# Each entry of `runs` is one `harness run` per seed. `config` is a bundled profile name or a
# config file (relative to the current directory, or `plugins/<method>/configs/...` of the
# installed method plugins). `name` (default: the method) names the row's jobs and its work dir
# `<work_dirs>/<name>/seed<N>`. `rescore` reuses the finished models of another entry (same
# work dir, `--resume`: only scored again) and runs after it. `controls=True` adds the control
# run every method declares, with the same seeds.
matrix = dict(
    seeds=[0, 1, 2],
    results="results",
    work_dirs="work_dirs",
    controls=True,
    runs=[
        dict(method="baseline", config="synth_small"),
        # the video self-supervised methods' protocol (median scaling), with the corruption set
        dict(name="baseline-median", method="baseline", config="plugins/baseline/configs/synth_small_median.py",
             eval_robustness=True, cfg_options=["evaluate.robustness.max_frames=45"]),
        dict(name="baseline-stereo", method="baseline", config="plugins/baseline/configs/synth_small_stereo.py"),
        # the stereo-supervised models again, median-scaled: the like-for-like control of structure
        dict(name="baseline-stereo-median", method="baseline",
             config="plugins/baseline/configs/synth_small_stereo_median.py", rescore="baseline-stereo",
             eval_robustness=True, cfg_options=["evaluate.robustness.max_frames=45"]),
        # ADU was built for the KITTI regime: its students and teacher see sparse (velodyne-like) GT only;
        # its declared control is then baseline:synth_small_sparse (added below with the same seeds)
        dict(method="adu", config="synth_small_sparse"),
        dict(method="selective", config="synth_small"),
        dict(method="recursive", config="synth_small"),
        dict(method="structure", config="synth_small", eval_robustness=True,
             cfg_options=["evaluate.robustness.max_frames=45"]),
        dict(method="ssmde", config="synth_small"),
    ],
    # after every run: `harness leaderboard --results <results> ...` per entry, then the figures
    leaderboards=[
        dict(format="github", out="leaderboard.md"),
        dict(format="latex", out="leaderboard.tex"),
        dict(format="csv", out="leaderboard.csv"),
        dict(format="html", out="leaderboard.html"),
        dict(robustness=True, reference="baseline:synth_small_stereo_median", out="robustness.md"),
    ],
    figures=dict(seed=0, out_dir="figures"),
)
