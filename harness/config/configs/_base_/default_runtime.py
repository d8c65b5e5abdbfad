# Runtime defaults shared by every run: seed, device, logging, caches, evaluation extras.
seed = 0
device = "auto"  # auto | cpu | cuda
deterministic = False  # torch deterministic algorithms (see docs/reliability.md); CPU runs are bitwise
# reproducible without it for a fixed thread count
# Multi-process training (docs: README "Performance"): "none", or "pytorch" under torchrun
# (set by --launcher); batch sizes are per process. gloo on CPU, NCCL on CUDA.
launcher = "none"
dist = dict(
    find_unused_parameters=True,  # a strategy may leave parameters unused in a step (False: a bit faster)
    sync_bn=None,  # "torch": SyncBatchNorm across ranks (CUDA only); None: per-rank BN statistics
)
channels_last = False  # CUDA only: channels-last weights and inputs (faster convolutions on tensor cores)
# Mixed precision is schedule.amp (False | True = "bf16" | "fp16"), CUDA only. On CUDA the loaders
# pin memory and batches are copied to the GPU with non-blocking copies.
num_workers = 0  # data loader workers; 0 keeps runs deterministic and light on 2-core machines
log_interval = 10
progress = True  # False: a quiet run (no plan, progress or validation lines on stderr; errors and warnings only)
# Watching (harness/pipeline/watch.py): TensorBoard scalars (every loss term, lr, val metrics) and an
# input | GT | teacher | student grid of vis_frames val frames per validation, under each stage's work dir
# (`tensorboard --logdir work_dirs`); --no-tensorboard sets tensorboard = False.
tensorboard = True
vis_frames = 3
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])  # mmengine's; TensorBoard added by the switch
checkpoint = dict(interval=1, max_keep_ckpts=2, save_last=True)  # mmengine CheckpointHook settings of every stage
cache_dir = None  # None: $STEREODISTILL_CACHE or ~/.cache/stereodistill
# multiplier of the student's and the teacher's base_width (a profile knob: --quick sets 0.5)
width_mult = 1.0
# frozen teachers: their outputs computed once per (teacher, data, split, view), memory-mapped
# and served during training instead of running the teacher every step (False: run it live)
teacher_outputs = dict(cache=True)
evaluate = dict(
    teacher=True,  # score the teacher on the same protocol
    mean_depth=True,  # score the training-set mean depth map
    batch_size=8,
)
