"""Benchmarks at the size users bring: the ResNet-50-sized network (bench/resnet50.py) scanned layer by layer.

A randomly initialised ResNet-50 sends every input to one class (its post-ReLU features share one large mean), so
random labels and self-labels would both measure nothing. :func:`self_labelled` centres the classifier on the
data's mean feature (``fc.bias = -W @ mean``) and labels each image with the network's own answer: the dense
accuracy is 100%, and pruning a layer costs accuracy exactly as far as it changes the network's answers, as a
trained network's would. The scan's timing is then that of a real scan: the adaptive evaluation stops where the
answer is clear, not everywhere at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def self_labelled(module: torch.nn.Module, shape: tuple[int, ...], n_train: int, n_test: int, seed: int = 0):
    """``module`` with its classifier centred on the data, and a Dataset labelled by it (see the module's docstring)."""
    from pruner_core.io.data import Dataset

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_test, *shape, generator=g)
    features = []
    hook = module.avgpool.register_forward_hook(lambda _m, _i, out: features.append(torch.flatten(out, 1)))
    with torch.no_grad():
        for i in range(0, len(x), 64):
            module(x[i : i + 64])
        hook.remove()
        mean = torch.cat(features).mean(0)
        module.fc.bias.copy_(-module.fc.weight @ mean)
        y = torch.cat([module(x[i : i + 64]).argmax(1) for i in range(0, len(x), 64)])
    classes = [str(c) for c in range(module.fc.out_features)]
    return Dataset("self-labelled random", x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes, "given")


def bench_sensitivity_resnet50() -> dict:
    """``sensitivity_seconds.resnet50`` (target <= 300 s): the ResNet-50-sized net at 3 x 96 x 96, every prunable
    layer (54: 53 convolutions and the classifier) x 9 ratios, unstructured L1, adaptive evaluation on up to
    ``samples`` self-labelled images, after a one-ratio warm-up scan of one layer. Also recorded: the units, the
    samples the cells used in all (``sensitivity_samples_used.resnet50``) against the full evaluation's
    (units x ratios x samples), the number of distinct labels, and the same scan at channel granularity
    (``.channel``: coupled groups, no latency timing)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from resnet50 import INPUT_SHAPE, resnet50

    from pruner_core.io.models import LoadedModel
    from pruner_core.sensitivity.scan import scan

    samples = 128
    module = resnet50()
    data = self_labelled(module, INPUT_SHAPE, 64, samples)
    model = LoadedModel(module, "resnet50 (bench)", "factory", True)
    scan(model, data, ratios=[0.5], samples=8, layers=["fc"])
    figures: dict = {"sensitivity_seconds.resnet50.samples": samples,
                     "sensitivity_seconds.resnet50.labels": int(data.y_test.unique().numel())}
    for granularity, suffix in (("unstructured", ""), ("channel", ".channel")):
        start = time.perf_counter()
        sens = scan(model, data, granularity=granularity, samples=samples, latency=False, adaptive=True)
        figures[f"sensitivity_seconds.resnet50{suffix}"] = round(time.perf_counter() - start, 1)
        figures[f"sensitivity_units.resnet50{suffix}"] = len(sens.units)
        figures[f"sensitivity_samples_used.resnet50{suffix}"] = sum(sum(u.samples) for u in sens.units)
        figures[f"sensitivity_samples_full.resnet50{suffix}"] = len(sens.units) * 9 * samples
    return figures


def bench_ddp() -> dict:
    """``ddp_step_ratio`` (recorded, not targeted: two processes share this machine's cores): the fine-tuning seconds
    per training sample of mnist-cnn (1 epoch, unstructured L1 50%), under ``torchrun --nproc_per_node=2`` (gloo)
    over one process, each read from its run's history (the last row's seconds since fine-tuning started)."""
    import json
    import subprocess
    import tempfile

    from pruner_core.frontends.serving import free_port

    bin_dir = Path(sys.executable).parent
    recipe = "granularity: unstructured\nsparsity: 0.5\nfinetune: {epochs: 1}\n"
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        tmp = Path(tmp)
        (tmp / "r.yaml").write_text(recipe)
        for ranks in (1, 2):
            pruner = [str(bin_dir / "pruner"), "prune", "demo:mnist-cnn", "--recipe", "r.yaml", "--out", f"run{ranks}",
                      "--quiet"]
            command = pruner if ranks == 1 else [str(bin_dir / "torchrun"), "--nproc_per_node=2",
                                                 f"--master_port={free_port()}", "--no-python", *pruner]
            subprocess.run(command, cwd=tmp, check=True, capture_output=True, timeout=900)
            history = json.loads((tmp / f"run{ranks}" / "history.json").read_text())
            seconds[ranks] = history[-1]["seconds"]
    return {"ddp_step_ratio": round(seconds[2] / seconds[1], 3),
            "ddp_finetune_seconds": {"1 process": round(seconds[1], 2), "2 processes": round(seconds[2], 2)},
            "ddp.how": "mnist-cnn, 1 epoch of 4,000 images at batch 64 (32 per rank under torchrun), gloo on CPU"}


def write_image_folder(root: Path, n: int, *, side: int = 28, fmt: str = "PNG", distinct: int = 500) -> Path:
    """``n`` MNIST digits in class folders (every 5th under test/): 28x28 grey PNGs, or at ``side`` upscaled and
    tinted RGB (a photo-sized stand-in). ``distinct`` images are encoded once and their bytes written again."""
    import io

    import numpy as np
    from PIL import Image

    z = np.load(ROOT / "assets" / "mnist5k.npz")
    x, y = z["x"][:, 0], z["y"]
    blobs = []
    for i in range(min(n, distinct)):
        im = Image.fromarray(x[i])
        if side != 28:
            tint = np.array([1.0, 0.7, 0.4]) * (0.5 + (i % 7) / 12)
            im = Image.fromarray((np.asarray(im.resize((side, side)))[..., None] * tint).astype(np.uint8), "RGB")
        buf = io.BytesIO()
        im.save(buf, fmt)
        blobs.append((int(y[i]), buf.getvalue()))
    for i in range(n):
        label, blob = blobs[i % len(blobs)]
        folder = root / ("test" if i % 5 == 0 else "train") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.{fmt.lower()}").write_bytes(blob)
    return root


def bench_stream() -> dict:
    """``stream_images_per_second``: one pass over a folder of 20,000 28x28 PNGs (train and test, batch 256) as
    fine-tuning and evaluation read it, decoded by 2 DataLoader workers; beside it the same images decoded one by one
    in this process (the baseline, measured in the same sitting), and 2,000 256x256 JPEGs read with the imagenet
    preset (resize 256, centre crop 224, mean/std)."""
    import tempfile

    from pruner_core.io.data import DATA_WORKERS, batches, load_data

    def per_second(spec: str, serial: bool = False) -> float:
        data = load_data(spec)
        start, n = time.perf_counter(), 0
        for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
            if serial:
                n += sum(1 for i in range(len(x)) if x[i] is not None)
            else:
                n += sum(len(xb) for xb, _ in batches(x, y, 256, shuffle=True, generator=torch.Generator().manual_seed(0)))
        return n / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        digits = write_image_folder(Path(tmp) / "digits", 20_000)
        photos = write_image_folder(Path(tmp) / "photos", 2_000, side=256, fmt="JPEG")
        per_second(str(digits))  # the page cache warm, as on a second epoch
        streamed, serial = per_second(str(digits)), per_second(str(digits), serial=True)
        imagenet = per_second(f"{photos}|imagenet,size=224,resize=256")
    return {"stream_images_per_second": round(streamed),
            "stream_images_per_second.serial": round(serial),
            "stream_worker_speedup": round(streamed / serial, 2),
            "stream_images_per_second.imagenet224": round(imagenet),
            "stream.how": f"one shuffled pass (batch 256) over 20,000 28x28 grey PNGs, {DATA_WORKERS} DataLoader "
                          "workers, against the same files decoded one by one in one process; and 2,000 256x256 RGB "
                          "JPEGs read with the imagenet preset (resize 256, centre crop 224, mean/std), 2 workers; "
                          f"{torch.get_num_threads()} torch threads, {__import__('os').cpu_count()} cores"}
