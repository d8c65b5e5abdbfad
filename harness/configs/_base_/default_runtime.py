# Runtime defaults shared by every run: seed, device, logging, caches, evaluation extras.
seed = 0
device = "auto"  # auto | cpu | cuda
deterministic = False  # torch deterministic algorithms (see docs/reliability.md); CPU runs are bitwise
# reproducible without it for a fixed thread count
num_workers = 0  # data loader workers; 0 keeps runs deterministic and light on 2-core machines
log_interval = 10
progress = True
cache_dir = None  # None: $STEREODISTILL_CACHE or ~/.cache/stereodistill
evaluate = dict(
    teacher=True,  # score the teacher on the same protocol
    mean_depth=True,  # score the training-set mean depth map
    batch_size=8,
)
