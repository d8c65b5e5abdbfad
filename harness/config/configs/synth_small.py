# A smaller benchmark profile for method comparisons on 2 CPU cores: the same data, student and
# (cached) teacher as synth_benchmark, half the student epochs. Use with `--config synth_small`.
# It only changes the schedule (no `_base_`), so a method's own config choices are kept.
schedule = dict(epochs=6, val_interval=3)
