# Profile `synth_small_stereo` (`--config` this file): the `synth_small` schedule with the
# baseline trained from the stereo pair alone (photometric + smoothness, normalised baseline 0.1,
# scored in metres through the 5.4 stereo factor): the control row for the stereo
# self-supervised methods (`selective`, `recursive`). Only for `--method baseline`.
schedule = dict(epochs=6, val_interval=3)  # = harness/configs/synth_small.py
method = dict(supervision="stereo")
