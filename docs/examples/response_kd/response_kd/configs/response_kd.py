# response_kd: merged over the harness defaults (student resnet, frozen stereo teacher).
method = dict(type="response_kd", scales=(0, 1, 2, 3), min_depth=0.1, max_depth=80.0,
              loss_weights=dict(gt=1.0, resp=0.5))
