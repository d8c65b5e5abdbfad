# --quick: a tiny smoke-test profile (well under a minute on 2 cores). Numbers mean nothing.
data = dict(generate=dict(frames=48, height=64, width=192, frames_per_drive=8), input_size=(64, 192))
teacher = dict(max_disp=32, base_width=8)
teacher_train = dict(epochs=1, batch_size=8, val_interval=1)
student = dict(base_width=8)
schedule = dict(epochs=1, batch_size=8, val_interval=1)
log_interval = 5
