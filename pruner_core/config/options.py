"""Option names the recipe validates and the pages and CLI offer, with a line for people each. No heavy imports.

The implementations live above (``pipeline.finetune.OPTIMIZERS``, ``pipeline.schedules.SCHEDULES``) and are keyed
by exactly these names (a test checks it), so a recipe can be read without importing the training loop.
"""

from __future__ import annotations

OPTIMIZERS: dict[str, str] = {
    "adamw": "AdamW, weight decay 1e-4",
    "adam": "Adam",
    "sgd": "SGD with Nesterov momentum 0.9, weight decay 1e-4",
}

SCHEDULES: dict[str, str] = {
    "oneshot": "prune once to the target, then fine-tune",
    "iterative": "steps rounds of prune -> fine-tune (Han et al. 2015)",
    "gmp": "gradual magnitude pruning: sparsity raised during fine-tuning (Zhu & Gupta 2017)",
}
SINGLE_STEP_SCHEDULES = ("oneshot",)  # schedules that prune in exactly one step

SCOPES: dict[str, str] = {
    "layerwise": "each layer loses its own ratio",
    "global": "one threshold across every pruned layer",
}

AUGMENTATIONS: dict[str, str] = {
    "auto": "the MNIST preset on the shipped demo data, none on your own data",
    "none": "the training images as they are",
    "mnist": "small rotation (+-10 deg), scale (0.9-1.1) and shift (+-2 px) of image batches",
}

QUANTIZE_KINDS: dict[str, str] = {
    "none": "stay in FP32",
    "int8_static": "INT8 weights and activations, activation ranges calibrated on training images (ONNX Runtime)",
    "int8_dynamic": "INT8 weights; activation ranges computed at run time, no calibration (ONNX Runtime)",
}

CALIBRATION_METHODS: dict[str, str] = {
    "minmax": "each activation's observed minimum and maximum (the default: fast, no outliers clipped)",
    "entropy": "the range that keeps the INT8 histogram closest to FP32's (KL divergence)",
    "percentile": "the 99.999th percentile of |activation| (clips rare outliers)",
}

QUANT_FORMATS: dict[str, str] = {
    "qdq": "QuantizeLinear/DequantizeLinear pairs around each operator, fused by ONNX Runtime",
    "qoperator": "QLinearConv / QLinearMatMul operators",
}

PREPROCESS_PRESETS: dict[str, str] = {
    "unit": "pixels / 255, in [0, 1] (the default; what the demo models were trained on)",
    "imagenet": "RGB, pixels / 255, then ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)",
    "inception": "pixels / 255 * 2 - 1, in [-1, 1] (mean 0.5, std 0.5: Inception, many ViTs)",
    "mnist": "grey, pixels / 255, then MNIST's mean 0.1307 and std 0.3081",
}

IMAGE_CHANNELS: dict[str, str] = {
    "auto": "as the files are (grey stays grey, colour becomes RGB), unless the preset says otherwise",
    "grey": "one channel (colour converted by ITU-R 601-2 luma)",
    "rgb": "three channels (grey repeated)",
}
