"""harness.deploy.predict: inputs, checkpoint resolution and loading, output files, teachers."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from harness.deploy import predict
from harness.data import formats
from harness.errors import HarnessError
from harness.models.sgbm import SGBMTeacher
from harness.models.stereo_teacher import StereoTeacher

from .conftest import INPUT_SIZE, make_run, texture


# ----------------------------------------------------------------------------- inputs
def test_find_images_file_folder_glob(images):
    files = predict.find_images(str(images))
    assert [p.name for p in files] == ["img0.png", "img1.png", "img2.png"]  # sorted, .txt left out
    assert predict.find_images(str(images / "img1.png")) == [images / "img1.png"]
    assert [p.name for p in predict.find_images(str(images / "img[02].png"))] == ["img0.png", "img2.png"]


@pytest.mark.parametrize("spec, message", [
    ("missing", "no such file or folder"), ("empty", "folder has no image files"), ("*.jpg", "matches no file"),
])
def test_find_images_errors(tmp_path, spec, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match=message):
        predict.find_images(str(tmp_path / spec))


def test_read_rgb_accepts_rgba_and_16_bit(tmp_path):
    rgb = texture(20, 30)
    bgra = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(predict.read_rgb(tmp_path / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "b.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    np.testing.assert_array_equal(predict.read_rgb(tmp_path / "b.png"), rgb)


def test_read_rgb_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "grey.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(HarnessError, match=r"grey.png: expected a colour image .* got 1 channel"):
        predict.read_rgb(tmp_path / "grey.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(HarnessError, match="bad.png: not a readable image file"):
        predict.read_rgb(tmp_path / "bad.png", "option --left")


# ----------------------------------------------------------------------------- student
def test_load_student_takes_the_student_weights_only(host, fake_run):
    run, model = fake_run
    loaded = predict.load_student(host, str(run))
    assert loaded.method == "baseline" and loaded.student_type == "resnet" and loaded.input_size == INPUT_SIZE
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    assert not loaded.model.training


def test_run_dir_uses_the_last_recorded_stage(tmp_path, host):
    run, last = make_run(tmp_path / "w", host, stages=("warmup", "student"))
    loaded = predict.load_student(host, str(run))
    assert loaded.checkpoint == run / "student" / "epoch_1.pth"
    assert torch.equal(loaded.model.state_dict()["encoder.conv1.weight"], last.state_dict()["encoder.conv1.weight"])
    # a moved work dir: the marker's absolute path is stale, the file name is found in the stage dir
    moved = tmp_path / "moved"
    run.rename(moved)
    assert predict.load_student(host, str(moved)).checkpoint == moved / "student" / "epoch_1.pth"


def test_checkpoint_file_finds_its_run_record(host, fake_run):
    run, _ = fake_run
    assert predict.load_student(host, str(run / "student" / "epoch_1.pth")).method == "baseline"


def test_student_of_another_method_is_refused(tmp_path, host):
    run, _ = make_run(tmp_path / "a", host)
    other, _ = make_run(tmp_path / "b", host, spec={"base_width": 16}, method="adu")
    with pytest.raises(HarnessError, match=r"do not fit student 'resnet' of method 'baseline' \(wrong shape"):
        predict.load_student(host, str(other / "student" / "epoch_1.pth"), str(run / "run_config.json"))


def test_teacher_or_corrupt_checkpoint_is_refused(tmp_path, host, fake_run):
    run, _ = fake_run
    torch.save({"state_dict": {"teacher.w": torch.ones(1)}}, run / "student" / "teacher.pth")
    with pytest.raises(HarnessError, match="has no student weights"):
        predict.load_student(host, str(run / "student" / "teacher.pth"))
    (run / "student" / "broken.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(HarnessError, match="broken.pth: cannot be read as a torch checkpoint"):
        predict.load_student(host, str(run / "student" / "broken.pth"))


def test_pickled_checkpoint_outside_a_run_folder_is_not_unpickled(tmp_path, host, fake_run):
    run, _ = fake_run
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "x.pth").write_bytes((run / "student" / "epoch_1.pth").read_bytes())
    with pytest.raises(HarnessError, match="x.pth: holds pickled objects .* not inside a harness run folder"):
        predict.load_student(host, str(stray / "x.pth"), str(run / "run_config.json"))
    # a plain state dict (tensors only) loads from anywhere
    torch.save(torch.load(run / "student" / "epoch_1.pth", weights_only=False)["state_dict"], stray / "plain.pth")
    assert predict.load_student(host, str(stray / "plain.pth"), str(run / "run_config.json")).method == "baseline"


def test_run_without_record_asks_for_config(tmp_path, host, fake_run):
    run, _ = fake_run
    (run / "run_config.json").unlink()
    with pytest.raises(HarnessError, match="no run_config.json .* --config"):
        predict.load_student(host, str(run))
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"method": "baseline", "config": {"student": {"type": "resnet", "base_width": 8},
                                                                   "data": {"input_size": list(INPUT_SIZE)}}}))
    # without the record the folder is not known to be the harness's: only plain weights load
    with pytest.raises(HarnessError, match="holds pickled objects .* not inside a harness run folder"):
        predict.load_student(host, str(run), str(result))
    plain = run / "student" / "plain.pth"
    torch.save(torch.load(run / "student" / "epoch_1.pth", weights_only=False)["state_dict"], plain)
    assert predict.load_student(host, str(plain), str(result)).student_type == "resnet"
    result.write_text("{}")
    with pytest.raises(HarnessError, match="has no run config with a student"):
        predict.load_student(host, str(run), str(result))


def test_non_resnet_student_rsd_mono(tmp_path, host):
    run, model = make_run(tmp_path / "r", host, student="rsd_mono", spec={"base_width": 8}, method="recursive")
    loaded = predict.load_student(host, str(run))
    x = torch.rand(1, 3, *INPUT_SIZE)
    torch.testing.assert_close(loaded.model.predict(x), model.predict(x))


def test_predict_images_writes_kitti_png_colour_and_npy(host, fake_run, images, tmp_path):
    run, model = fake_run
    student = predict.load_student(host, str(run))
    calls = []
    out = tmp_path / "out"
    out.mkdir()
    written = predict.predict_images(student, predict.find_images(str(images)), out, npy=True,
                                     progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)] and len(written) == 9
    for i, (h, w) in enumerate([(50, 77), (64, 96), (120, 200)]):
        depth = np.load(out / f"img{i}_depth.npy")
        assert depth.shape == (h, w) and depth.dtype == np.float32  # resized back to the input
        png = cv2.imread(str(out / f"img{i}_depth.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (h, w)
        np.testing.assert_array_equal(png, np.rint(depth * 256).astype(np.uint16))  # metres x 256
        colour = formats.read_image(out / f"img{i}_depth_color.png")
        assert colour.shape == (h, w, 3) and colour.std() > 0
    # at the training resolution the depth is the student's own output
    rgb = predict.read_rgb(images / "img1.png")
    expected = model.predict(predict.to_tensor(rgb))[0, 0].numpy()
    np.testing.assert_allclose(np.load(out / "img1_depth.npy"), expected, rtol=1e-5)


def test_check_out_dir(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(HarnessError, match="exists and is not a folder"):
        predict.check_out_dir(str(tmp_path / "f"))
    assert predict.check_out_dir(str(tmp_path / "new" / "deep")).is_dir()


# ----------------------------------------------------------------------------- teachers
def _shifted_pair(h=64, w=160, d=8):
    """A right view whose content sits ``d`` px left of the left view's (disparity ``d``)."""
    wide = texture(h, w + d, seed=3)
    return wide[:, :w].copy(), wide[:, d:].copy()


def test_sgbm_pair_recovers_a_known_shift(host, tmp_path):
    left, right = _shifted_pair(d=8)
    teacher = predict.load_teacher(host, "sgbm", tmp_path, max_disp=32)
    assert isinstance(teacher.model, SGBMTeacher) and teacher.model.num_disparities == 32
    disp = predict.predict_pair(teacher, left, right)
    assert disp.shape == left.shape[:2]
    gt = np.full(disp.shape, 8.0)
    gt[:, :8] = np.nan  # no match inside the right image
    assert predict.bad_pixel_rate(disp, gt, 1.0) < 0.05


def test_pair_of_different_sizes_is_refused(host, tmp_path):
    teacher = predict.load_teacher(host, "sgbm", tmp_path)
    with pytest.raises(HarnessError, match=r"--left/--right: the images differ in size \(160x64 vs 150x64\)"):
        predict.predict_pair(teacher, texture(64, 160), texture(64, 150))


def _cache_entry(cache, input_size=(64, 96)):
    torch.manual_seed(0)
    model = StereoTeacher(max_disp=16, base_width=8, refine_steps=1)
    entry = cache / "teachers" / "abc123"
    entry.mkdir(parents=True)
    torch.save(model.state_dict(), entry / "teacher.pth")
    meta = {"teacher": {"type": "stereo", "max_disp": 16, "base_width": 8, "refine_steps": 1}}
    if input_size:
        meta["input_size"] = list(input_size)
    (entry / "meta.json").write_text(json.dumps(meta))
    return entry, model.eval()


def test_cached_learned_teacher_by_key_folder_or_file(host, tmp_path):
    entry, model = _cache_entry(tmp_path)
    for spec in ("abc123", str(entry), str(entry / "teacher.pth")):
        teacher = predict.load_teacher(host, spec, tmp_path)
        assert teacher.name == "stereo" and teacher.input_size == (64, 96)
    left, right = _shifted_pair(h=64, w=96, d=4)
    disp = predict.predict_pair(teacher, left, right)
    batch = {"image": predict.to_tensor(left), "image_right": predict.to_tensor(right),
             "K": torch.eye(3)[None], "baseline": torch.ones(1)}
    with torch.no_grad():
        np.testing.assert_allclose(disp, model(batch).disp[0][0, 0].numpy(), rtol=1e-4, atol=1e-4)
    # another size: run at the training size, disparities scaled to the input's width
    big = predict.predict_pair(teacher, cv2.resize(left, (192, 128)), cv2.resize(right, (192, 128)))
    assert big.shape == (128, 192)


def test_teacher_errors(host, tmp_path):
    with pytest.raises(HarnessError, match="--teacher stereo: a trained teacher needs its weights"):
        predict.load_teacher(host, "stereo", tmp_path)
    with pytest.raises(HarnessError, match="--teacher nope: not a teacher name"):
        predict.load_teacher(host, "nope", tmp_path)
    (tmp_path / "junk").mkdir()
    with pytest.raises(HarnessError, match="not a teacher cache entry"):
        predict.load_teacher(host, str(tmp_path / "junk"), tmp_path)
    entry, _ = _cache_entry(tmp_path)
    with pytest.raises(HarnessError, match="--max-disp: only for a teacher built by name"):
        predict.load_teacher(host, str(entry), tmp_path, max_disp=64)
    torch.save(StereoTeacher(max_disp=32, base_width=8, refine_steps=1).state_dict(), entry / "teacher.pth")
    with pytest.raises(HarnessError, match="does not fit teacher 'stereo'"):
        predict.load_teacher(host, str(entry), tmp_path)


def test_disparity_to_depth_and_bad_pixel_rate():
    disp = np.array([[10.0, 0.0, 5.0]], np.float32)
    np.testing.assert_allclose(predict.disparity_to_depth(disp, 100.0, 0.5), [[5.0, 0.0, 10.0]])
    gt = np.array([[10.0, np.nan, 9.0]])
    assert predict.bad_pixel_rate(disp, gt, 3.0) == 0.5
    with pytest.raises(ValueError, match="no valid pixel"):
        predict.bad_pixel_rate(disp, np.full((1, 3), np.inf))


def test_predict_post_process_is_monodepth2_flip_fusion():
    from harness.eval.protocol import flip_post_process

    class Ramp(torch.nn.Module):  # depth grows to the right, so the mirrored pass differs
        def predict(self, x):
            cols = torch.linspace(1.0, 5.0, x.shape[-1])
            return (cols * (1 + x.mean(dim=1, keepdim=True)))

    student = predict.LoadedStudent(Ramp(), "ramp", "m", (32, 64), Path("x.pth"))
    rgb = texture(32, 64, seed=1)
    plain = predict.predict_depth(student, rgb)
    fused = predict.predict_depth(student, rgb, post_process=True)
    x = predict.to_tensor(rgb)
    d, dm = Ramp().predict(x), Ramp().predict(torch.flip(x, dims=[-1]))
    expect = (1.0 / flip_post_process(1.0 / d, 1.0 / dm))[0, 0].numpy()
    np.testing.assert_allclose(fused, expect, rtol=1e-5)
    assert not np.allclose(fused, plain)
