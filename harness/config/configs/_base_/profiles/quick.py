# --quick: a tiny smoke-test profile (well under a minute on 2 cores). Numbers mean nothing.
# Knobs only (harness/config/loader.py): schedules, data size, the models' width multiplier.
data = dict(generate=dict(frames=48, height=64, width=192, frames_per_drive=8), input_size=(64, 192))
width_mult = 0.5  # base_width of the student and the teacher: 16 -> 8
teacher_train = dict(epochs=1, batch_size=8, val_interval=1)
schedule = dict(epochs=1, batch_size=8, val_interval=1)
log_interval = 5
