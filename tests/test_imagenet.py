"""TinyImageNet / ImageNet layouts, pinned subsets, resize-then-crop, the prepared store and its checks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import dreamdd
from dreamdd.cli import main
from dreamdd.data import ClassBank, load, prepare
from dreamdd.data import store as stores
from dreamdd.data.bank import PERMUTE_UP_TO
from dreamdd.data.imagenet import imagenet_listing, tiny_listing
from dreamdd.data.imaging import decode, fit
from dreamdd.data.subsets import IDC_CLASS100, imagenet_classes, subsets
from dreamdd.errors import DreamddError
from dreamdd.seeding import generator

from layouts import NETTE, TINY_WNIDS, make_imagenet, make_tiny, write_jpeg

TINY_RUN = {"model": {"width": 8, "depth": 2}, "match": {"batch_real": 4}, "select": {"interval": 1},
            "distill": {"iterations": 1, "inner_loop": 1, "n_data": 8, "eval_every": 0, "checkpoint_every": 1},
            "synth": {"factor": 1}}


# ------------------------------------------------------------------------------------------- pinned lists

def test_imagenet_classes_are_the_sorted_1000_wnids_with_names():
    classes = imagenet_classes()
    assert len(classes) == 1000 and list(classes) == sorted(classes)
    assert classes["n01440764"].startswith("tench") and classes["n03888257"].startswith("parachute")


MTT_NAMES = {  # the class names MTT's utils.py gives beside its index lists
    "imagewoof": ["Australian terrier", "Border terrier", "Samoyed", "beagle", "Shih-Tzu", "English foxhound",
                  "Rhodesian ridgeback", "dingo", "golden retriever", "Old English sheepdog"],
    "imagemeow": ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "lion", "tiger", "jaguar",
                  "snow leopard", "lynx"],
    "imagesquawk": ["peacock", "flamingo", "macaw", "pelican", "king penguin", "bald eagle", "toucan", "ostrich",
                    "black swan", "sulphur-crested cockatoo"],
    "imagefruit": ["pineapple", "banana", "strawberry", "orange", "lemon", "pomegranate", "fig", "bell pepper",
                   "cucumber", "Granny Smith"],
    "imageyellow": ["bee", "yellow lady's slipper", "banana", "lemon", "corn", "school bus", "honeycomb", "lion",
                    "black and gold garden spider", "goldfinch"],
}


def test_subsets_are_pinned_and_consistent():
    s = subsets()
    classes = imagenet_classes()
    assert set(s) == {"imagenette", "imagewoof", "imagefruit", "imageyellow", "imagemeow", "imagesquawk",
                      "imagenet-10", "imagenet-100"}
    for sub in s.values():
        assert len(set(sub.wnids)) == len(sub.wnids) and all(w in classes for w in sub.wnids) and sub.source
    assert sorted(s["imagenette"].wnids) == NETTE
    for name, names in MTT_NAMES.items():
        assert sorted(classes[w].split(",")[0] for w in s[name].wnids) == sorted(names)
    # fast.ai's imagewoof folders are MTT's imagewoof
    assert set(s["imagewoof"].wnids) == {"n02086240", "n02087394", "n02088364", "n02089973", "n02093754",
                                         "n02096294", "n02099601", "n02105641", "n02111889", "n02115641"}
    assert len(IDC_CLASS100) == 100 and s["imagenet-10"].wnids == IDC_CLASS100[:10]
    assert IDC_CLASS100[:3] == ("n02869837", "n01749939", "n02488291")


# --------------------------------------------------------------------------------------------- resizing

def test_fit_resizes_the_shorter_side_then_center_crops():
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, 10:30] = 255       # the middle half is white, the sides black
    out = np.asarray(fit(Image.fromarray(a), (10, 10)))
    assert out.shape == (10, 10, 3)
    assert out.min() > 200  # the center crop of a 10x20 resize is the white middle: nothing squashed
    expected = Image.fromarray(a).resize((20, 10), Image.Resampling.BILINEAR).crop((5, 0, 15, 10))
    np.testing.assert_array_equal(out, np.asarray(expected))
    assert np.asarray(fit(Image.fromarray(a), (8, 20))).shape == (8, 20, 3)


def test_decode_gives_chw_and_names_a_corrupt_file(tmp_path):
    write_jpeg(tmp_path / "a.JPEG", 0, size=(30, 20))
    assert decode(tmp_path / "a.JPEG", (8, 8)).shape == (3, 8, 8)
    (tmp_path / "bad.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DreamddError, match="bad.JPEG"):
        decode(tmp_path / "bad.JPEG", (8, 8))


# ------------------------------------------------------------------------------------------------ layouts

def test_tiny_listing_order_names_and_val_labels(tmp_path):
    folder = make_tiny(tmp_path)
    listing = tiny_listing(folder)
    assert listing.wnids == sorted(TINY_WNIDS) and listing.names[0] == f"thing {sorted(TINY_WNIDS)[0]}"
    assert listing.counts("train") == [4, 4, 4] and listing.counts("test") == [2, 2, 2]
    assert all(f.parent.name == "images" for files in listing.splits["test"] for f in files)


def test_tiny_val_sorted_into_class_folders_is_accepted(tmp_path):
    folder = make_tiny(tmp_path)
    val = folder / "val"
    for line in (val / "val_annotations.txt").read_text().splitlines():
        file, wnid = line.split("\t")[:2]
        (val / wnid / "images").mkdir(parents=True, exist_ok=True)
        (val / "images" / file).rename(val / wnid / "images" / file)
    (val / "val_annotations.txt").unlink()
    assert tiny_listing(folder).counts("test") == [2, 2, 2]


@pytest.mark.parametrize("val", ["folders", "loc"])
def test_imagenet_subset_listing_keeps_only_its_classes(tmp_path, val):
    extra = "n01443537"   # goldfish: an ImageNet class outside Imagenette
    folder = make_imagenet(tmp_path, NETTE + [extra], val=val)
    listing = imagenet_listing(folder, "imagenette", subsets()["imagenette"].wnids)
    assert listing.wnids == NETTE and listing.names[0] == "tench"
    assert listing.counts("train") == [3] * 10 and listing.counts("test") == [2] * 10


def test_imagenet_devkit_ground_truth(tmp_path):
    import scipy.io
    folder = make_imagenet(tmp_path, NETTE[:2], val="loc")
    (folder / "LOC_val_solution.csv").unlink()
    devkit = folder / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    synsets = np.array([(1, NETTE[1], 0), (2, NETTE[0], 0), (3, "n00000001", 2)],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    scipy.io.savemat(devkit / "meta.mat", {"synsets": synsets})
    # images 1, 2 are NETTE[0] (id 2); 3, 4 are NETTE[1] (id 1)
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n2\n1\n1\n")
    listing = imagenet_listing(folder, "two", tuple(NETTE[:2]))
    assert [[f.name for f in files] for files in listing.splits["test"]] == [
        ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"],
        ["ILSVRC2012_val_00000003.JPEG", "ILSVRC2012_val_00000004.JPEG"]]


# ------------------------------------------------------------------------------------------------- store

def test_prepare_writes_a_class_sorted_store_equal_to_decoding(tmp_path):
    folder = make_tiny(tmp_path)
    store = prepare("tiny-imagenet", tmp_path, 16, workers=2)
    index = json.loads((store.path / "index.json").read_text())
    assert index["complete"] and index["class_ids"] == sorted(TINY_WNIDS) and index["image_size"] == [16, 16]
    assert index["splits"]["train"]["offsets"] == [0, 4, 8] and len(index["source"]["listing_sha256"]) == 64
    listing = tiny_listing(folder)
    rows = np.array([5, 0, 11, 5])
    files = [f for files in listing.splits["train"] for f in files]
    np.testing.assert_array_equal(store.train.read(rows), np.stack([decode(files[r], (16, 16)) for r in rows]))
    assert prepare("tiny-imagenet", tmp_path, 16, workers=1).path == store.path   # up to date: reused
    import shutil
    shutil.rmtree(folder)   # a prepared store serves without the source files
    entry = {d["name"]: d for d in dreamdd.data.list_datasets(tmp_path)}["tiny-imagenet"]
    assert entry["present"] and "prepared: tiny-imagenet-16x16" in entry["path"]
    assert len(load("tiny-imagenet", root=tmp_path, image_size=16).test) == 6


def test_an_interrupted_prepare_resumes(tmp_path, monkeypatch):
    make_tiny(tmp_path)
    whole = prepare("tiny-imagenet", tmp_path, 12, workers=1)
    expected = whole.train.read(np.arange(12))
    for f in whole.path.iterdir():
        f.unlink()
    calls = {"n": 0}
    real = stores._decode_job

    def flaky(job):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(job)
    monkeypatch.setattr(stores, "_decode_job", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare("tiny-imagenet", tmp_path, 12, workers=1)
    index = json.loads((whole.path / "index.json").read_text())
    assert not index["complete"] and index["splits"]["train"]["done"] == [True, False, False]
    assert stores.open_store(whole.path) is None
    monkeypatch.setattr(stores, "_decode_job", real)
    calls["n"] = 0
    store = prepare("tiny-imagenet", tmp_path, 12, workers=1)
    np.testing.assert_array_equal(store.train.read(np.arange(12)), expected)


def test_load_reads_banks_from_the_store(tmp_path):
    make_tiny(tmp_path)
    data = load("tiny-imagenet", root=tmp_path, image_size=16, val_size=3, seed=0)
    assert data.info.image_size == (16, 16) and data.info.class_ids == tuple(sorted(TINY_WNIDS))
    assert len(data.train) == 9 and len(data.val) == 3 and len(data.test) == 6
    assert data.train.rows is not None and data.train.image_shape == (3, 16, 16)
    idx = data.train.class_indices(1)
    x = data.train.batch(idx, "cpu")
    assert x.shape == (3, 3, 16, 16) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(data.train.labels[idx].tolist()) == {1}
    assert dreamdd.data.DatasetInfo.from_dict(data.info.to_dict()) == data.info


class Zeros:
    """A stand-in store split of many rows (nothing on disk)."""
    def __init__(self, n):
        self.shape = (n, 1, 1, 1)

    def read(self, rows):
        return np.zeros((len(rows), 1, 1, 1), dtype=np.uint8)


def test_sampling_a_large_bank_draws_distinct_indices_without_a_permutation(monkeypatch):
    n = PERMUTE_UP_TO * 4
    bank = ClassBank(Zeros(n), torch.zeros(n, dtype=torch.long), 1)

    def no_randperm(*args, **kwargs):
        raise AssertionError("a permutation of the whole split")
    monkeypatch.setattr(torch, "randperm", no_randperm)
    a = bank.sample(128, generator(0, "x"))
    b = bank.sample(128, generator(0, "x"))
    assert len(a) == 128 and len(set(a.tolist())) == 128 and torch.equal(a, b)
    assert int(a.max()) < n and bank.batch(a[:3], "cpu").shape == (3, 1, 1, 1)


# -------------------------------------------------------------------------------------- command line

def test_check_prepare_and_a_one_iteration_distillation(tmp_path, capsys):
    make_tiny(tmp_path)
    assert main(["datasets", "--check", "tiny-imagenet", "--data-root", str(tmp_path), "--workers", "1",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train: 12 images" in out and "decoded 18 files: 18 readable" in out and "OK" in out
    assert main(["prepare", "tiny-imagenet", "--data-root", str(tmp_path), "--image-size", "16", "--workers", "1",
                 "--quiet"]) == 0
    assert "prepared:" in capsys.readouterr().out
    run = dreamdd.distill("tiny-imagenet", 1, image_size=16, data_root=str(tmp_path), out=tmp_path / "run",
                          overrides=TINY_RUN, evaluate=False, quiet=True)
    meta = json.loads((run.path / "metadata.json").read_text())
    assert meta["dataset"]["image_size"] == [16, 16] and meta["dataset"]["class_ids"] == sorted(TINY_WNIDS)
    assert "image_size: 16" in (run.path / "config.yaml").read_text()
    assert tuple(run.distilled.images.shape) == (3, 3, 16, 16)
    result = dreamdd.evaluate(run.path, epochs=1, repeats=1, data_root=str(tmp_path))   # its 16 px store again
    assert result["train_size"] == 3 and result["runs"][0]["epochs_trained"] == 1      # the 3 images, 1 epoch
    assert result["test_mean"] == result["runs"][0]["test_acc"]
    assert main(["datasets", "--check", "digits"]) == 0 and "train: 1347 images" in capsys.readouterr().out
    assert main(["datasets", "--check", "no-such-set"]) == 2


def test_imagenette_check_and_distill(tmp_path, capsys):
    make_imagenet(tmp_path, NETTE + ["n01443537"], n_train=2, n_val=1, val="loc")
    assert main(["datasets", "--check", "imagenette", "--data-root", str(tmp_path), "--workers", "1",
                 "--quiet"]) == 0
    assert "classes match the pinned list" in capsys.readouterr().out
    run = dreamdd.distill("imagenette", 1, image_size=8, data_root=str(tmp_path), out=tmp_path / "run",
                          overrides=dict(TINY_RUN, data={"val_size": 10}, model={"width": 4}), evaluate=False,
                          quiet=True)
    assert run.summary["dataset"] == "imagenette" and run.summary["preset"] == "imagenette"
    assert "name: resnet10_ap" in (run.path / "config.yaml").read_text()
    assert json.loads((run.path / "metadata.json").read_text())["dataset"]["class_names"][0] == "tench"


def _exit2(argv, capsys, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("dreamdd: error:") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    return err


def test_bad_layouts_end_in_one_message_exit_2(tmp_path, capsys):
    folder = make_tiny(tmp_path)
    prep = ["prepare", "tiny-imagenet", "--data-root", str(tmp_path), "--workers", "1", "--quiet",
            "--image-size", "8"]
    annotations = folder / "val" / "val_annotations.txt"
    text = annotations.read_text()
    annotations.unlink()
    _exit2(prep, capsys, "val_annotations.txt is missing")
    annotations.write_text(text.replace(TINY_WNIDS[0], "n99999999", 1))
    _exit2(prep, capsys, "n99999999")
    assert main(["datasets", "--check", "tiny-imagenet", "--data-root", str(tmp_path), "--quiet"]) == 2
    assert "PROBLEM" in capsys.readouterr().out
    annotations.write_text(text)
    bad = folder / "train" / TINY_WNIDS[1] / "images" / f"{TINY_WNIDS[1]}_0.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _exit2(prep, capsys, "could not be decoded", bad.name)
    assert main(["datasets", "--check", "tiny-imagenet", "--data-root", str(tmp_path), "--quiet",
                 "--workers", "1"]) == 2
    assert bad.name in capsys.readouterr().out
    bad.unlink()
    for f in (folder / "train" / TINY_WNIDS[1] / "images").iterdir():
        f.unlink()
    _exit2(prep, capsys, "hold no images", TINY_WNIDS[1])


def test_imagenet_1k_names_missing_and_unknown_classes(tmp_path, capsys):
    make_imagenet(tmp_path, NETTE[:2], n_train=1, n_val=1)
    _exit2(["prepare", "imagenet-1k", "--data-root", str(tmp_path), "--quiet"], capsys, "998 of 1000")
    (tmp_path / "imagenet" / "train" / "n99999999").mkdir()
    _exit2(["prepare", "imagenet-1k", "--data-root", str(tmp_path), "--quiet"], capsys, "n99999999")
    assert main(["datasets", "--check", "imagenet-1k", "--data-root", str(tmp_path), "--quiet"]) == 2
    out = capsys.readouterr().out
    assert "998 of the 1000 classes" in out and "n99999999" in out
    _exit2(["prepare", "cifar10", "--data-root", str(tmp_path)], capsys, "needs no preparing")


@pytest.mark.parametrize("dataset,ipc,preset,model,size", [
    ("tiny-imagenet", 1, "tiny-imagenet-ipc1", "convnet", 64), ("tiny-imagenet", 50, "tiny-imagenet-ipc50", "convnet", 64),
    ("imagenet-10", 10, "imagenet-10-ipc10", "resnet10_ap", 224), ("imagenet-100", 20, "imagenet-100-ipc20",
                                                                    "resnet10_ap", 224),
    ("imagewoof", 10, "imagewoof", "resnet10_ap", 128)])
def test_presets_for_tiny_and_imagenet_subsets(dataset, ipc, preset, model, size):
    from dreamdd.config import preset_dir, resolve
    config = resolve(dataset, ipc)
    assert config.preset == preset and config.model.name == model and config.data.image_size == size
    assert config.data.dataset == dataset
    if dataset == "tiny-imagenet":
        assert config.model.depth == 4 and config.match.batch_real == 64 and config.distill.n_data == 1000
        assert config.image_lr(64) == pytest.approx((5e-3 if ipc < 50 else 1e-6) * ipc / 10 * 4)
    else:
        assert config.match.metric == "l1" and config.synth.factor == 3 and config.distill.iterations == 500
    text = "".join((preset_dir() / f"{name}.yaml").read_text() for name in ("tiny-imagenet", "imagenet-subset",
                                                                            "imagenet-100"))
    assert text.count("Sources") == 3 and "github.com" in text


def test_plan_reports_memory_and_time(tmp_path, capsys):
    assert main(["plan", "--dataset", "digits", "--ipc", "2", "--set", "model.width=8", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["facts"]["classes"] == 10 and plan["facts"]["seconds_per_image"] > 0
    assert plan["memory_bytes"]["synthetic set + gradient + momentum"] == 3 * 10 * 2 * 64 * 4
    assert all(v > 0 for v in plan["seconds"].values()) and "data in memory (uint8)" in plan["memory_bytes"]
    make_tiny(tmp_path)
    prepare("tiny-imagenet", tmp_path, 16, workers=1)
    assert main(["plan", "--dataset", "tiny-imagenet", "--ipc", "1", "--image-size", "16", "--data-root",
                 str(tmp_path), "--set", "model.width=8"]) == 0
    out = capsys.readouterr().out
    assert "3 classes of 3x16x16, 12 train / 6 test images (the prepared store's index)" in out
    assert "data on disk (prepared store)" in out and "one inner iteration" in out and "fits" in out


def test_subsets_reuse_a_prepared_imagenet_1k_store(tmp_path, capsys):
    from dreamdd.data.subsets import imagenet_wnids
    make_imagenet(tmp_path, imagenet_wnids(), n_train=2, n_val=1, size=(10, 8))
    whole = prepare("imagenet-1k", tmp_path, 8, workers=2)
    assert len(whole.train) == 2000 and len(whole.test) == 1000
    data = load("imagenette", root=tmp_path, image_size=8, val_size=0)
    assert not (tmp_path / "prepared" / "imagenette-8x8").exists()   # nothing decoded again
    assert data.info.class_ids == tuple(NETTE) and data.info.class_names[-1] == "parachute"
    assert len(data.train) == 20 and len(data.test) == 10 and "imagenet-1k's store" in data.source
    own = np.stack([decode(tmp_path / "imagenet" / "train" / NETTE[3] / f"{NETTE[3]}_{i}.JPEG", (8, 8))
                    for i in range(2)])
    np.testing.assert_array_equal(data.train.uint8(data.train.class_indices(3)).numpy(), own)
    assert main(["datasets", "--check", "imagenet-1k", "--data-root", str(tmp_path), "--no-decode"]) == 0
    assert "classes match the pinned list (ImageNet-1K's 1000 wnids)" in capsys.readouterr().out
