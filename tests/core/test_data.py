"""Data sets: the demo, .npz files and image-folder zips, and every way a user's file can be wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruner_core.errors import DataError, SpecError
from pruner_core.io.data import DEMO_DATA, LOADERS, load_data, load_data_bytes

from .helpers import noise, png_bytes, write_npz, write_zip

# 20 flat samples whose single feature is their index, so a split can be traced back.
X20 = np.arange(20, dtype=np.float32)[:, None]
Y20 = np.arange(20) % 3


def gray(value: int, size: int = 6) -> bytes:
    return png_bytes(np.full((size, size), value, dtype=np.uint8))


# --- the demo -----------------------------------------------------------------------------------


def test_demo_mnist5k_is_the_documented_split(demo_data):
    assert (len(demo_data.y_train), len(demo_data.y_test)) == (4000, 1000)
    assert demo_data.sample_shape == (1, 28, 28)
    assert demo_data.num_classes == 10
    assert demo_data.x_train.dtype == demo_data.x_test.dtype == torch.float32
    for x in (demo_data.x_train, demo_data.x_test):
        assert x.min() >= 0 and x.max() <= 1
    assert torch.bincount(demo_data.y_test, minlength=10).tolist() == [100] * 10
    assert demo_data.summary() == {
        "name": "demo:mnist5k", "sample_shape": [1, 28, 28], "classes": 10, "train": 4000, "test": 1000,
        "split": demo_data.split, "preprocess": "unit: pixels / 255",
    }


def test_unknown_demo_data_names_it_and_the_demos():
    with pytest.raises(SpecError, match=r"'nope'.*demo:mnist5k"):
        load_data("demo:nope")
    assert list(DEMO_DATA) == ["mnist5k"]


# --- .npz ---------------------------------------------------------------------------------------


def test_npz_without_test_split_gets_the_same_seeded_80_20_split(tmp_path):
    path = write_npz(tmp_path / "d.npz", x=X20, y=Y20)
    a, b = load_data(path), load_data(path)
    assert (len(a.y_train), len(a.y_test)) == (16, 4)
    for first, second in ((a.x_train, b.x_train), (a.x_test, b.x_test), (a.y_train, b.y_train), (a.y_test, b.y_test)):
        assert torch.equal(first, second)
    # every sample lands in exactly one part, with its own label
    index = torch.cat([a.x_train, a.x_test])[:, 0].long()
    assert sorted(index.tolist()) == list(range(20))
    assert torch.equal(torch.cat([a.y_train, a.y_test]), torch.from_numpy(Y20)[index])
    assert "80%/20%" in a.split and "seed" in a.split
    assert a.num_classes == 3


def test_npz_with_test_split_keeps_it(tmp_path):
    x_test = np.full((5, 2), 7.0, dtype=np.float32)
    path = write_npz(tmp_path / "d.npz", x=np.zeros((8, 2)), y=np.arange(8) % 2, x_test=x_test, y_test=np.arange(5))
    ds = load_data(path)
    assert (len(ds.y_train), len(ds.y_test)) == (8, 5)
    assert torch.equal(ds.x_test, torch.from_numpy(x_test))
    assert ds.y_test.tolist() == [0, 1, 2, 3, 4]
    assert ds.num_classes == 5  # the largest label of either part decides
    assert "given" in ds.split


def test_npz_uint8_pixels_are_scaled_to_0_1(tmp_path):
    x = np.array([[[0, 51], [255, 102]]] * 4, dtype=np.uint8)  # 4 samples of 2x2
    ds = load_data(write_npz(tmp_path / "d.npz", x=x, y=np.zeros(4, dtype=np.int64)))
    assert ds.sample_shape == (1, 2, 2)
    assert torch.allclose(ds.x_train[0, 0], torch.tensor([[0.0, 0.2], [1.0, 0.4]]))


def test_npz_nhwc_images_become_channels_first(tmp_path):
    x = np.random.default_rng(0).random((10, 5, 6, 3)).astype(np.float32)
    ds = load_data(write_npz(tmp_path / "d.npz", x=x, y=np.zeros(10), x_test=x, y_test=np.zeros(10)))
    assert ds.sample_shape == (3, 5, 6)
    assert torch.equal(ds.x_test, torch.from_numpy(x.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize(
    ("x_shape", "sample_shape"),
    [((10, 5, 6), (1, 5, 6)), ((10, 7), (7,)), ((10, 3, 5, 6), (3, 5, 6)), ((10, 1, 5, 6), (1, 5, 6))],
    ids=["NHW gets a channel", "flat features", "NCHW kept", "NCHW gray kept"],
)
def test_npz_sample_shapes(tmp_path, x_shape, sample_shape):
    ds = load_data(write_npz(tmp_path / "d.npz", x=np.zeros(x_shape, dtype=np.float32), y=np.zeros(10, dtype=int)))
    assert ds.sample_shape == sample_shape
    assert ds.x_train.shape[1:] == ds.x_test.shape[1:] == sample_shape


def test_float_labels_holding_integers_are_accepted(tmp_path):
    ds = load_data(write_npz(tmp_path / "d.npz", x=X20, y=Y20.astype(np.float32)))
    assert ds.y_train.dtype == torch.int64
    assert ds.num_classes == 3


@pytest.mark.parametrize("suffix", sorted(LOADERS))
def test_upload_bytes_load_exactly_like_the_file(tmp_path, suffix):
    if suffix == ".npz":
        path = write_npz(tmp_path / "d.npz", x=X20, y=Y20)
    else:
        path = write_zip(tmp_path / "d.zip", {f"{c}/{i}.png": gray(40 * i) for c in ("a", "b") for i in range(4)})
    from_file, from_bytes = load_data(path), load_data_bytes(path.name, path.read_bytes())
    assert from_file.summary() == from_bytes.summary()
    assert from_file.classes == from_bytes.classes
    for attr in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(from_file, attr), getattr(from_bytes, attr))


# --- image-folder zips --------------------------------------------------------------------------

# class "dark" images are black, class "light" white: a label can be checked against its pixels.
FOLDERS = {f"{c}/{i}.png": gray(0 if c == "dark" else 255) for c in ("dark", "light") for i in range(5)}


def assert_labels_match_pixels(ds):
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert torch.equal(x.mean(dim=(1, 2, 3)), y.float())


def test_zip_with_one_folder_per_class(tmp_path):
    ds = load_data(write_zip(tmp_path / "imgs.zip", FOLDERS))
    assert ds.classes == ["dark", "light"]
    assert ds.sample_shape == (1, 6, 6)
    assert (len(ds.y_train), len(ds.y_test)) == (8, 2)
    assert_labels_match_pixels(ds)


def test_zip_with_a_single_wrapping_folder_loads_the_same(tmp_path):
    plain = load_data(write_zip(tmp_path / "plain.zip", FOLDERS))
    wrapped = load_data(write_zip(tmp_path / "wrapped.zip", {f"my data/{k}": v for k, v in FOLDERS.items()}))
    assert wrapped.classes == plain.classes
    assert torch.equal(wrapped.x_test, plain.x_test) and torch.equal(wrapped.y_test, plain.y_test)


@pytest.mark.parametrize("wrapper", ["", "mnist/"])
def test_zip_with_train_and_test_folders_keeps_that_split(tmp_path, wrapper):
    members = {f"{wrapper}train/{k}": v for k, v in FOLDERS.items()}
    members |= {f"{wrapper}test/{c}/{i}.png": gray(0 if c == "dark" else 255) for c in ("dark", "light") for i in range(2)}
    ds = load_data(write_zip(tmp_path / "split.zip", members))
    assert ds.classes == ["dark", "light"]
    assert (len(ds.y_train), len(ds.y_test)) == (10, 4)
    assert "given" in ds.split
    assert_labels_match_pixels(ds)


def test_zip_rgb_images_are_three_channels_and_junk_is_ignored(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red
    members = {f"{c}/{i}.png": png_bytes(rgb) for c in ("x", "y") for i in range(3)}
    members |= {"__MACOSX/x/._0.png": b"junk", "x/.hidden.png": b"junk", "readme.txt": b"not an image"}
    ds = load_data(write_zip(tmp_path / "rgb.zip", members))
    assert ds.sample_shape == (3, 4, 5)
    assert len(ds.y_train) + len(ds.y_test) == 6
    assert torch.equal(ds.x_test[0, 0], torch.ones(4, 5)) and ds.x_test[0, 1:].abs().sum() == 0


# --- what can be wrong with a user's file --------------------------------------------------------


@pytest.mark.parametrize("name", ["data.csv", "data.npy", "images.tar.gz"])
def test_unknown_suffix_names_the_file_and_the_valid_types(name):
    with pytest.raises(SpecError, match=rf"'{name}'.*\.npz.*\.zip"):
        load_data(name)
    with pytest.raises(SpecError, match=rf"'{name}'.*\.npz.*\.zip"):
        load_data_bytes(name, b"")


@pytest.mark.parametrize("suffix", sorted(LOADERS))
def test_missing_file_names_it(tmp_path, suffix):
    with pytest.raises(DataError, match=r"missing\.(npz|zip)' does not exist"):
        load_data(tmp_path / f"missing{suffix}")


@pytest.mark.parametrize("suffix", sorted(LOADERS))
def test_corrupt_file_is_a_data_error(tmp_path, suffix):
    path = tmp_path / f"upload{suffix}"
    path.write_bytes(noise(0))
    with pytest.raises(DataError, match=rf"upload\{suffix}"):
        load_data(path)


def test_truncated_npz_is_not_readable(tmp_path):
    payload = write_npz(tmp_path / "d.npz", x=X20, y=Y20).read_bytes()
    with pytest.raises(DataError, match=r"d\.npz is not a readable \.npz"):
        load_data_bytes("d.npz", payload[: len(payload) // 2])


def test_random_bytes_npz_is_reported_as_unreadable_not_as_pickled(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(noise(0))
    with pytest.raises(DataError, match=r"noise\.npz is not a readable \.npz"):
        load_data(path)


def test_npy_content_under_npz_name_is_a_data_error(tmp_path):
    path = tmp_path / "single.npz"
    with path.open("wb") as f:
        np.save(f, X20)
    with pytest.raises(DataError, match=r"single\.npz"):
        load_data(path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": X20, "z": Y20}, r"lacks the array\(s\) \['y'\]; it holds \['x', 'z'\]"),
        ({"images": X20, "labels": Y20}, r"lacks the array\(s\) \['x', 'y'\]; it holds \['images', 'labels'\]"),
        ({"x": X20, "y": Y20, "x_test": X20}, r"only one of 'x_test' and 'y_test'"),
        ({"x": X20, "y": Y20, "y_test": Y20}, r"only one of 'x_test' and 'y_test'"),
        ({"x": X20, "y": Y20[:3]}, r"'y' has 3 labels for 20 samples"),
        ({"x": X20, "y": Y20 - 1}, r"'y' holds the negative label -1"),
        ({"x": X20, "y": Y20 + 0.5}, r"'y' must hold integer class labels; got dtype float64"),
        ({"x": X20, "y": Y20[:, None]}, r"'y' has shape \(20, 1\); expected one integer label per sample"),
        ({"x": X20, "y": np.array(["a"] * 20)}, r"'y' must hold integer class labels; got dtype <U1"),
        ({"x": np.array([["a"]] * 20), "y": Y20}, r"'x' has dtype <U1; expected numbers"),
        ({"x": np.zeros((20, 1, 2, 2, 2)), "y": Y20}, r"'x' has shape \(20, 1, 2, 2, 2\); expected \[N, D\]"),
        ({"x": np.zeros((0, 3)), "y": np.zeros(0)}, r"'x' holds no samples"),
        ({"x": X20[:1], "y": Y20[:1]}, r"1 sample cannot be split into train and test"),
        (
            {"x": X20, "y": Y20, "x_test": np.zeros((4, 2)), "y_test": np.zeros(4)},
            r"'x_test' samples have shape \(2,\) but 'x' samples \(1,\)",
        ),
        ({"x": X20, "y": Y20, "x_test": X20[:4], "y_test": Y20[:2]}, r"'y_test' has 2 labels for 4 samples"),
    ],
    ids=[
        "no y", "neither x nor y", "x_test only", "y_test only", "label count", "negative label", "fractional labels",
        "2-D labels", "string labels", "string pixels", "5-D x", "empty", "one sample", "test shape", "test label count",
    ],
)
def test_malformed_npz_says_what_is_wrong(tmp_path, arrays, message):
    with pytest.raises(DataError, match=r"bad\.npz.*" + message):
        load_data(write_npz(tmp_path / "bad.npz", **arrays))


def test_npz_with_object_array_is_refused_without_unpickling(tmp_path):
    path = write_npz(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(DataError, match="obj.npz: cannot read arrays without unpickling"):
        load_data(path)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({}, r"holds no images; expected one sub-folder per class"),
        ({"notes/readme.txt": b"hi", "a/b.csv": b"1,2"}, r"holds no images.*\.png"),
        ({"0.png": gray(0), "cat/1.png": gray(0)}, r"image '0\.png' is not inside a class folder"),
        ({"cat/0.png": gray(0), "cat/1.png": gray(0, size=7)}, r"image 'cat/1\.png' is 7x7 \(gray\) but 'cat/0\.png' is 6x6"),
        (
            {"cat/0.png": gray(0), "dog/1.png": png_bytes(np.zeros((6, 6, 3), dtype=np.uint8))},
            r"image 'dog/1\.png' is 6x6 \(RGB\) but 'cat/0\.png' is 6x6",
        ),
        ({"cat/0.png": gray(0), "cat/1.png": b"not a png"}, r"cannot read image 'cat/1\.png'"),
    ],
    ids=["empty", "no image files", "loose image", "two sizes", "gray and RGB", "broken image"],
)
def test_malformed_zip_says_what_is_wrong(tmp_path, members, message):
    with pytest.raises(DataError, match=message):
        load_data(write_zip(tmp_path / "imgs.zip", members))
