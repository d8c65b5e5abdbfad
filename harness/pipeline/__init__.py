"""The training pipeline: a run's stages on mmengine's Runner, the teacher cache, precomputed
teacher outputs, checkpoints, determinism, distributed launch, resources and the loss guard."""
