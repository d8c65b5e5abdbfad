"""Papers' reported numbers: protocol ids computed like a run's, incomplete protocols never match."""
import hashlib
import json

from harness.eval.protocol import Protocol
from harness.host.manager import PluginHost
from harness.report.paper import SPLITS_DIR, load_paper, protocol_id, reported_for, reported_numbers

KITTI = {"dataset": "kitti", "split": "eigen", "gt_source": "velodyne", "crop": "garg", "min_depth": 0.001,
         "max_depth": 80, "gt_mask": "range", "scale": "median", "flip_pp": False, "resolution": [192, 640]}


def test_protocol_id_equals_a_kitti_runs():
    split_hash = hashlib.sha256((SPLITS_DIR / "eigen" / "test_files.txt").read_bytes()).hexdigest()
    run = Protocol(name="kitti-eigen", dataset="kitti", split="eigen", split_hash=split_hash, gt_source="velodyne",
                   crop="garg", scale="median", resolution=(192, 640), min_depth=1e-3, max_depth=80.0)
    assert protocol_id(KITTI) == run.protocol_id()
    assert protocol_id(dict(KITTI, crop="eigen")) != run.protocol_id()


def test_incomplete_or_unknown_protocols_have_no_id():
    assert protocol_id({k: v for k, v in KITTI.items() if k != "resolution"}) is None
    assert protocol_id(dict(KITTI, split="no_such_split")) is None
    assert protocol_id(dict(KITTI, crop="diagonal")) is None
    assert protocol_id("KITTI Eigen, Garg crop") is None


def test_load_paper_and_match(tmp_path):
    path = tmp_path / "paper.json"
    path.write_text(json.dumps({"paper": "x", "results": {
        "kitti": {"protocol": KITTI, "metrics": {"abs_rel": 0.1, "a1": 0.9, "note": "n/a"}},
        "broken": "not an entry"}}))
    (entry,) = load_paper(path)
    assert entry["metrics"] == {"abs_rel": 0.1, "a1": 0.9}
    assert reported_for({"m": [entry]}, "m", protocol_id(KITTI)) == {"abs_rel": 0.1, "a1": 0.9}
    assert reported_for({"m": [entry]}, "m", "other") == {}
    path.write_text("{oops")
    assert load_paper(path) == []
    assert load_paper(tmp_path / "absent.json") == []


def test_shipped_paper_files_load():
    papers = reported_numbers(PluginHost().catalog)
    assert {"adu", "selective", "recursive", "structure", "ssmde"} <= set(papers)
    ssmde = {e["label"]: e for e in papers["ssmde"]}
    assert ssmde["kitti"]["metrics"] == {"abs_rel": 0.111, "a1": 0.87}
    assert ssmde["kitti"]["protocol_id"] is None  # the abstract gives no resolution: never side by side
