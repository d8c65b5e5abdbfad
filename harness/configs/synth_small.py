# A smaller benchmark profile for method comparisons on 2 CPU cores: the same data, student and
# (cached) teacher as synth_benchmark, half the student epochs. Use with `--config synth_small`.
_base_ = ["synth_benchmark.py"]
schedule = dict(epochs=6, val_interval=3)
