# synth-c: the synthetic set, trained and tested clean, then evaluated on the KITTI-C-style
# corruptions (18 x 5, corrupted on the fly at the network input size). `--dataset synth-c`
# equals `--dataset synth --eval-robustness` (different dataset name, so different protocol ids).
_base_ = ["synth.py"]
data = dict(dataset="synth-c")
# the other evaluate.robustness keys keep harness.eval.robustness.DEFAULTS
evaluate = dict(
    robustness=dict(
        enabled=True,
    )
)
