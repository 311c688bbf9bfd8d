"""Image folders on disk, streamed through a DataLoader, and the preprocessing declared with the data."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from pruner_core.errors import DataError, SpecError
from pruner_core.frontends.cli import app
from pruner_core.io.data import ASSETS, DATA_WORKERS, batches, load_data, loader, sample_digest
from pruner_core.io.image_folder import ImageFiles
from pruner_core.io.preprocess import Preprocess, join_spec, split_spec
from pruner_core.measure.metrics import accuracy

runner = CliRunner()
MNIST = np.load(ASSETS / "mnist5k.npz")


def write_digits(root: Path, n: int, *, split: bool = True, distinct: int = 200) -> Path:
    """``n`` MNIST digits as 28x28 grey PNGs in class folders (every 5th under test/ when ``split``); the first
    ``distinct`` digits are encoded once and their bytes written again, so 20,000 files take a second."""
    x, y = MNIST["x"][:, 0], MNIST["y"]
    blobs = []
    for i in range(min(n, distinct)):
        buf = io.BytesIO()
        Image.fromarray(x[i]).save(buf, "PNG")
        blobs.append((int(y[i]), buf.getvalue()))
    for i in range(n):
        label, blob = blobs[i % len(blobs)]
        folder = root / ("test" if i % 5 == 0 else "train") / str(label) if split else root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.png").write_bytes(blob)
    return root


def write_tinted(root: Path, n: int = 1200) -> Path:
    """MNIST digits, padded to 32x32 and tinted with a random colour each: RGB PNGs, every 6th under test/."""
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (np.pad(MNIST["x"][i, 0], 2)[..., None] * rng.uniform(0.3, 1.0, 3)).astype(np.uint8)
        folder = root / ("test" if i % 6 == 0 else "train") / str(int(MNIST["y"][i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "RGB").save(folder / f"{i}.png")
    return root


def test_a_folder_streams_through_two_workers_and_reads_as_its_zip_does(tmp_path):
    root = write_digits(tmp_path / "digits", 300)
    data = load_data(root)
    assert data.streamed and isinstance(data.x_train, ImageFiles)
    assert (len(data.y_train), len(data.y_test), data.sample_shape) == (240, 60, (1, 28, 28))
    assert data.split == "given (train / test folders, each in a seeded order)" and data.classes == [str(c) for c in range(10)]
    assert DATA_WORKERS == 2 and loader(data.x_train, data.y_train, 32, range(240)).num_workers == 2
    zipped = tmp_path / "digits.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in sorted(root.rglob("*.png")):
            zf.write(f, f.relative_to(root).as_posix())
    whole = load_data(zipped)
    assert not whole.streamed
    streamed = torch.cat([xb for xb, _ in batches(data.x_train, data.y_train, 64)])
    assert torch.equal(streamed, whole.x_train) and torch.equal(data.y_train, whole.y_train)
    # shuffled with the same generator, the stream deals the same batches as tensors held in memory
    a = [yb for _, yb in batches(data.x_test, data.y_test, 16, shuffle=True, generator=torch.Generator().manual_seed(3))]
    b = [yb for _, yb in batches(whole.x_test, whole.y_test, 16, shuffle=True, generator=torch.Generator().manual_seed(3))]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert torch.equal(data.x_test[:5], whole.x_test[:5]) and torch.equal(data.x_test[7], whole.x_test[7])
    assert sample_digest(data.x_test, data.y_test) == sample_digest(load_data(root).x_test, data.y_test)


def test_without_train_and_test_folders_a_folder_gets_the_seeded_split_and_val_is_a_test_split(tmp_path):
    flat = load_data(write_digits(tmp_path / "flat", 50, split=False))
    assert (len(flat.y_train), len(flat.y_test)) == (40, 10) and "seed 0" in flat.split
    val = write_digits(tmp_path / "val", 50)
    (val / "test").rename(val / "val")
    assert load_data(val).split == "given (train / val folders, each in a seeded order)"


PEAK = """
import sys, torch
from pruner_core.io.data import batches, load_data

def peak():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))

before = peak()
data = load_data(sys.argv[1])
for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):  # a whole pass, as fine-tuning makes
    for xb, yb in batches(x, y, 256, shuffle=True, generator=torch.Generator().manual_seed(0)):
        pass
print(len(data.y_train) + len(data.y_test), peak() - before)
"""


def test_memory_stays_flat_as_the_folder_grows(tmp_path):
    """Peak memory a load and a whole pass add: 20,000 images (a 63 MB tensor if held) under 2x what 1,000 add."""
    added = {}
    for n in (1_000, 20_000):
        root = write_digits(tmp_path / str(n), n)
        out = subprocess.run([sys.executable, "-c", PEAK, str(root)], capture_output=True, text=True, check=True,
                             timeout=300)
        count, added[n] = map(int, out.stdout.split())
        assert count == n
    assert added[20_000] < 2 * added[1_000], added


def test_a_bad_image_mid_stream_is_named(tmp_path):
    root = write_digits(tmp_path / "d", 40)
    (root / "train" / "3" / "zz-broken.png").write_bytes(b"not a png")
    data = load_data(root)
    with pytest.raises(DataError, match=r"^cannot read image 'train/3/zz-broken\.png'"):
        list(batches(data.x_train, data.y_train, 8))
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(root / "train" / "3" / "zz-broken.png")
    with pytest.raises(DataError, match=r"image 'train/3/zz-broken\.png' gives a sample of shape \(1, 30, 30\).*size"):
        list(batches(load_data(root).x_train, data.y_train, 8))
    assert load_data(join_spec(str(root), Preprocess(size=28))).x_train[:].shape[1:] == (1, 28, 28)  # cropped


def test_preprocessing_steps_match_their_definitions(tmp_path):
    root = write_tinted(tmp_path / "rgb", 12)
    raw = load_data(root)
    assert raw.sample_shape == (3, 32, 32) and float(raw.x_train[:].max()) <= 1
    net = load_data(join_spec(str(root), Preprocess("imagenet", size=28, resize=32)))  # a crop alone
    assert net.sample_shape == (3, 28, 28)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(net.x_train[0], (raw.x_train[0][:, 2:30, 2:30] - mean) / std, atol=1e-6)  # crop, then mean/std
    grey = load_data(join_spec(str(root), Preprocess(channels="grey", resize=64)))
    assert grey.sample_shape == (1, 64, 64)
    assert load_data(join_spec(str(root), Preprocess("inception"))).x_train[:].min() >= -1
    demo = load_data("demo:mnist5k|mnist")  # arrays: normalised, not resized
    assert abs(float(demo.x_test.mean())) < 0.05 and abs(float(demo.x_test.std()) - 1) < 0.05
    assert load_data("demo:mnist5k|channels=rgb").sample_shape == (3, 28, 28)


@pytest.mark.parametrize(("spec", "message"), [
    ("demo:mnist5k|nope", r"unknown preprocessing preset 'nope'; valid: unit, imagenet, inception, mnist"),
    ("demo:mnist5k|size=abc", r"size 'abc' is not a whole number of pixels"),
    ("demo:mnist5k|size=0", r"size 0 is not a side in pixels; give a whole number from 1 to 4096"),
    ("demo:mnist5k|size=32,resize=16", r"resize 16 is smaller than size 32"),
    ("demo:mnist5k|channels=cmyk", r"unknown channels 'cmyk'; valid: auto, grey, rgb"),
    ("demo:mnist5k|std=0", r"every std above 0"),
    ("demo:mnist5k|shape=3", r"unknown key\(s\) \['shape'\]; valid: preset, size, resize, channels, mean, std"),
    ("demo:mnist5k|size=24", r"arrays, which are taken at their size \(\(1, 28, 28\)\): resize and crop apply to "
                             r"image files"),
    ("demo:mnist5k|mean=0.5/0.5/0.5", r"1 channel\(s\), but the preprocessing's mean/std have 3 values"),
])
def test_bad_preprocessing_is_refused_naming_what_is_valid(spec, message):
    with pytest.raises((SpecError, DataError), match=message):
        load_data(spec)


def test_a_spec_carries_its_preprocessing_both_ways(tmp_path):
    pre = Preprocess("imagenet", size=224, resize=256)
    spec = join_spec("photos/", pre)
    assert spec == "photos/|imagenet,size=224,resize=256" and split_spec(spec) == ("photos/", pre)
    assert join_spec("demo:mnist5k", Preprocess()) == "demo:mnist5k"
    assert Preprocess.parse("inception", 64) == Preprocess("inception", size=64)
    (tmp_path / "p.yaml").write_text("preset: imagenet\nsize: 224\nmean: [0.5, 0.5, 0.5]\n")
    assert Preprocess.parse(str(tmp_path / "p.yaml")).mean == (0.5, 0.5, 0.5)
    assert pre.to_dict() == {"preset": "imagenet", "size": 224, "resize": 256, "channels": "rgb",
                             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def trained_on_imagenet_inputs(data) -> nn.Module:
    """A small CNN trained (seeded, 4 epochs) on ``data``'s inputs as they stream."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(32 * 7 * 7, 10))
    opt, gen = torch.optim.Adam(net.parameters(), 3e-3), torch.Generator().manual_seed(0)
    for _ in range(4):
        for xb, yb in batches(data.x_train, data.y_train, 64, shuffle=True, generator=gen):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    return net.eval()


def test_a_model_trained_on_imagenet_normalised_inputs_scores_only_with_that_preset_and_its_run_records_it(tmp_path):
    root = write_tinted(tmp_path / "rgb")
    data = load_data(f"{root}|imagenet,size=28")
    net = trained_on_imagenet_inputs(data)
    with torch.no_grad():
        trained = accuracy(net, data.x_test, data.y_test)
        others = {p: accuracy(net, load_data(f"{root}|{p}").x_test, data.y_test) for p in ("size=28",)}
    assert trained > 0.8, trained
    assert others["size=28"] < trained - 0.3, (trained, others)  # the default: [0, 1] pixels
    model = tmp_path / "net.ts"
    torch.jit.save(torch.jit.trace(net, data.x_test[:2]), str(model))
    scored = {}
    for preset in ("imagenet", "unit"):
        out = tmp_path / f"{preset}.json"
        result = runner.invoke(app, ["info", str(model), "--data", str(root), "--preprocess", preset, "--size", "28",
                                     "--runs", "3", "--json", str(out)])
        assert result.exit_code == 0, result.output
        scored[preset] = json.loads(out.read_text())["accuracy"]
    assert scored["imagenet"] == pytest.approx(trained) and scored["unit"] == pytest.approx(others["size=28"])
    (tmp_path / "r.yaml").write_text("granularity: unstructured\nsparsity: 0.1\nfinetune: {epochs: 0}\n")
    result = runner.invoke(app, ["prune", str(model), "--recipe", str(tmp_path / "r.yaml"), "--out",
                                 str(tmp_path / "run"), "--data", str(root), "--preprocess", "imagenet", "--size", "28",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    base = json.loads((tmp_path / "run" / "base.json").read_text())
    assert base["data"] == f"{root}|imagenet,size=28"
    assert base["preprocess"] == Preprocess("imagenet", size=28).to_dict()
    out = tmp_path / "again.json"
    result = runner.invoke(app, ["info", str(tmp_path / "run"), "--runs", "3", "--json", str(out)])  # its own data
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert json.loads(out.read_text())["accuracy"] == pytest.approx(metrics["accuracy"])
    assert metrics["accuracy"] > trained - 0.05


def test_every_offered_preset_has_its_values():
    from pruner_core.config.options import PREPROCESS_PRESETS
    from pruner_core.io.preprocess import PRESET_VALUES

    assert list(PRESET_VALUES) == list(PREPROCESS_PRESETS)
    for name in PRESET_VALUES:
        assert Preprocess(name).describe().startswith(f"{name}: ")


def test_a_streamed_folder_prunes_fine_tunes_and_scans_exactly_as_its_zip_held_in_memory(tmp_path):
    """Calibration (Taylor), fine-tuning, evaluation and sensitivity draw on the stream: a run on the folder and a
    run on the same images in a zip (decoded whole) choose the same channels and end with the same weights."""
    from safetensors.torch import load_file

    from pruner_core.io.fit import fit_data
    from pruner_core.io.models import load_model
    from pruner_core.sensitivity.scan import scan

    root = write_digits(tmp_path / "digits", 400)
    zipped = tmp_path / "digits.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in sorted(root.rglob("*.png")):
            zf.write(f, f.relative_to(root).as_posix())
    (tmp_path / "r.yaml").write_text("granularity: channel\nsparsity: 0.3\ncriterion: taylor\nseed: 1\n"
                                     "finetune: {epochs: 1, batch_size: 32}\n")
    for name, data in (("folder", root), ("zip", zipped)):
        result = runner.invoke(app, ["prune", "demo:mnist-cnn", "--recipe", str(tmp_path / "r.yaml"), "--out",
                                     str(tmp_path / name), "--data", str(data), "--quiet"])
        assert result.exit_code == 0, result.output
    weights = [load_file(tmp_path / name / "weights.safetensors") for name in ("folder", "zip")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    metrics = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("folder", "zip")]
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"]
    model = load_model("demo:mnist-cnn")
    scans = [scan(model, fit_data(model, load_data(d)), samples=60, ratios=[0.5, 0.9], adaptive=False)
             for d in (root, zipped)]
    curves = [s.to_json()["units"] for s in scans]
    assert curves[0] == curves[1] and len(curves[0]) == 4


def test_a_given_split_is_dealt_in_a_seeded_order_so_the_first_samples_hold_every_class(tmp_path):
    """The files list class by class; a scan's first 1000 samples, a calibration's first 256 must not be one class."""
    data = load_data(write_digits(tmp_path / "d", 400))
    assert len(set(data.y_test[:20].tolist())) >= 6 and len(set(data.y_train[:40].tolist())) >= 8
    assert "seeded order" in data.split and torch.equal(load_data(tmp_path / "d").y_test, data.y_test)


def test_train_val_and_test_together_are_refused_and_a_file_gone_mid_stream_is_named(tmp_path):
    root = write_digits(tmp_path / "d", 60)
    (root / "val" / "3").mkdir(parents=True)
    Image.fromarray(MNIST["x"][0, 0]).save(root / "val" / "3" / "x.png")
    with pytest.raises(DataError, match=r"train/, val/ and test/ folders; give train/ with one of test/ or val/"):
        load_data(root)
    (root / "val" / "3" / "x.png").unlink()
    (root / "val" / "3").rmdir()
    (root / "val").rmdir()
    data = load_data(root)
    gone = Path(data.x_test.root) / str(data.x_test.files[5])
    gone.unlink()
    with pytest.raises(DataError, match=rf"^cannot read image '{re.escape(str(data.x_test.files[5]))}' \(No such file"):
        accuracy(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), data.x_test, data.y_test)


def test_specs_are_written_one_way_and_arrays_take_a_size_that_changes_nothing():
    from pruner_core.io.preprocess import respec

    assert respec("photos|") == respec("photos|unit") == "photos"
    assert respec("photos|imagenet,resize=256,size=224") == "photos|imagenet,size=224,resize=256"
    assert respec("photos", "imagenet", 224) == "photos|imagenet,size=224"
    assert split_spec(join_spec("p", Preprocess(mean=(0.1234567891,))))[1].mean == (0.1234567891,)
    assert load_data("demo:mnist5k|mnist,size=28").sample_shape == (1, 28, 28)  # 28x28 already: nothing to do


def test_a_measured_search_keeps_the_report_half_of_a_folder_unread(tmp_path):
    from pruner_core.sensitivity.measured import held_out

    data = load_data(write_digits(tmp_path / "d", 100))
    search, report = held_out(data, 8)
    assert isinstance(search.x_test, torch.Tensor) and len(search.x_test) == 8
    assert isinstance(report.x_test, ImageFiles) and len(report.x_test) == len(report.y_test) == 12


def test_without_a_given_split_a_folder_and_its_zip_split_alike(tmp_path):
    root = write_digits(tmp_path / "flat", 60, split=False)
    zipped = tmp_path / "flat.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in sorted(root.rglob("*.png")):
            zf.write(f, f.relative_to(root).as_posix())
    folder, whole = load_data(root), load_data(zipped)
    assert folder.split == whole.split == "seeded 80%/20% split (seed 0)"
    assert torch.equal(folder.y_test, whole.y_test) and torch.equal(folder.x_test[:], whole.x_test)
