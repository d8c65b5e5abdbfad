# The synth_small profile under its own name, for the self-supervised control row that
# `selective` is compared with: run the baseline with stereo (photometric) supervision as
#   harness run --method baseline --config plugins/selective/configs/synth_small_stereo.py \
#       --cfg-options method.supervision=stereo --seed S
# so its result files (profile "synth_small_stereo") sit beside, and never overwrite, the
# ground-truth-supervised baseline files of profile "synth_small". Nothing else changes.
_base_ = ["../../../harness/config/configs/synth_small.py"]
