# KITTI raw, Eigen protocol (docs/datasets.md). Its `data` replaces the synth one under `--dataset kitti`;
# needs --data-root (KITTI cannot be generated). Train on Eigen-Zhou, select on its val list,
# report on the 697-frame Eigen test split with Velodyne GT (Eigen export: LiDAR-x values).
data = dict(
    dataset="kitti",
    root=None,
    input_size=(192, 640),  # Monodepth2's default 640x192
    # training GT: camera projective depth of the scan (Monodepth2's get_depth, vel_depth=False)
    train=dict(split="eigen_zhou_train", flip_mode="mirror", gt_source="velodyne", vel_depth=False),
    val=dict(split="eigen_zhou_val", gt_source="velodyne", vel_depth=True),
    test=dict(split="eigen", gt_source=None, vel_depth=True),  # None: velodyne for eigen, dense for eigen_benchmark
    # Eigen/Monodepth2 protocol: Garg crop, 1e-3 < gt < 80, pred clamped to [1e-3, 80] after scaling,
    # per-image median scaling (a method's eval_scale_policy overrides `scale`)
    protocol=dict(crop="garg", min_depth=1e-3, max_depth=80.0, gt_mask="range", scale="median", flip_pp=False),
    # per-split protocol changes used by `harness eval` (Monodepth2's improved-GT variant: gt > 0, no crop)
    split_protocols=dict(eigen_benchmark=dict(crop="none", gt_mask="positive")),
)
