# synth-c: the synthetic set, trained and tested clean, then evaluated on the KITTI-C-style
# corruptions (18 x 5, corrupted on the fly at the network input size). `--dataset synth-c`
# equals `--dataset synth --eval-robustness` (different dataset name, so different protocol ids).
data = dict(dataset="synth-c")
evaluate = dict(
    robustness=dict(
        enabled=True,
        corruptions="all",
        severities=[1, 2, 3, 4, 5],
        seed=0,  # corruption seed, independent of the training seed
        max_frames=None,
        corrupt_size=None,
        per_severity_draws=False,
        corrupted_root=None,
        weather="auto",
        dee="dee2",
        round_digits=3,
        reference="baseline",
    )
)
