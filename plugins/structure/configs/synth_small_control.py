# Profile `synth_small_control` (`--config` this file; declared as structure's control, run it
# with `--method structure`): the like-for-like control of `structure` on `synth_small`. The same
# student, sources (video frames and the right view), scales, augmentation and schedule as the
# method; the structure-consistency and semantic-distillation terms are off
# (dsc = ltd = graph = 0) and so is the graph fusion pass (ssc_fuse=False: with it the teacher's
# graph features still enter the student decoder in a fused pass), so only the photometric and
# smoothness terms of the clean pass train the student.
schedule = dict(epochs=6, val_interval=3)  # = harness/config/configs/synth_small.py
method = dict(loss_weights=dict(dsc=0.0, ltd=0.0, graph=0.0), ssc_fuse=False)
