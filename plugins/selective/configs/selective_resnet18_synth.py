# selective (Song & Yoon): every option of SelectiveStrategy with its default, so each one can be
# changed with --cfg-options method.<key>=<value>. Self-supervised from the right view + proxy
# disparity of the configured (cached, frozen) stereo teacher; no ground truth in training.
method = dict(
    type="selective",
    proxy_source="online",  # "online": frozen teacher every step | "precomputed": proxy_* batch keys
    proxy_conf="auto",  # teacher confidence: "auto" | True | False
    conf_threshold=0.5,
    mask_targets="A",  # "A": proxy vs own estimate vs identity | "B": left/right proxy validity
    joint_mask_grad=False,  # False: sg on the soft masks before binarising (BCE trains MaskDecoder)
    mask_threshold=0.5,
    target_margin=0.2,  # y_P needs <E_P> < 0.8 <E_S> (ties go to the student) ...
    target_window=7,  # ... on 7x7 local means of the error maps; 0.0 / 1 = the plain per-pixel rule
    proxy_mask="pred",  # proxy term inside the binarised predicted mask | "target": inside y_P
    proxy_form="abs_log",  # |log D_S - log D_P| | "log1p_l1": Depth Hints log(1 + |D_S - D_P|) ("log_l1": deprecated alias)
    photo_region="all",  # photometric term: "all" (auto-mask) | "outside_proxy" | "self"
    automask=True,
    ts_mode="auto",  # "auto": feature hints if the teacher has the features, else response
    ts_pairs=dict(enc_s4="dec_s4", enc_s8="dec_s8"),
    cond_strides=(16, 8, 4, 2, 1),
    scales=(0, 1, 2, 3),
    baseline_norm=0.1,  # as its control: normalised baseline, eval x eval_baseline/0.1 = 5.4 | None: metric
    eval_baseline=0.54,
    encoder_pass="auto",
    loss_weights=dict(photo=1.0, smooth=1e-3, proxy=1.0, mask=0.1, ts=0.1),
)
# the same start as its control (plugins/baseline/configs/synth_small_stereo.py): disparity heads
# at sigmoid 0.03, about 6 px at 96x320 with the normalised baseline
student = dict(init_disp=0.03)
