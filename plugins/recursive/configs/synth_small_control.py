# Profile `synth_small_control` (`--config` this file; declared as recursive's control, run it
# with `--method recursive`): the like-for-like control of `recursive` on `synth_small`. The same
# Mono-Net (rsd_mono), data, augmentation, stages, lr and batch sizes, and the same mono terms
# (appearance, left-right consistency, smoothness) as the method; every Stereo-Net and
# distillation term is off (stereo_* = out = feat = nl = 0) and the Stereo-Net is not trained in
# stage 2, so the Mono-Net learns from the stereo pair alone.
schedule = dict(epochs=6, val_interval=3)  # = harness/config/configs/synth_small.py
_off = dict(stereo_ap=0.0, stereo_lr=0.0, stereo_sm=0.0, out=0.0, feat=0.0, nl=0.0)
method = dict(joint_loss_weights=_off, loss_weights=_off, distill_train_teacher=False)
del _off
