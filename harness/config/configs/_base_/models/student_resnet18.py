# Monodepth2-style ResNet-18 student; base_width 64 is the real ResNet-18, 16 keeps CPU runs fast.
student = dict(type="resnet", num_layers=18, base_width=16, min_depth=0.1, max_depth=100.0)
