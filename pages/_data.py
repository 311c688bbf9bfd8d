"""The Model page's preprocessing picker: how the chosen data's pixels become the model's inputs."""

import streamlit as st

from pruner_core.config.options import IMAGE_CHANNELS, PREPROCESS_PRESETS
from pruner_core.config.text import options_help
from pruner_core.io.preprocess import Preprocess, split_spec


def preprocess_picker(active_spec: str) -> None:
    """Preset, input size, resize and channels, starting from the active data's (see :func:`picked_preprocess`)."""
    now = split_spec(active_spec)[1]  # the active data's preprocessing, until changed
    preset, size, resize, channels = st.columns(4)
    preset.selectbox("Preprocessing", list(PREPROCESS_PRESETS), key="model.preset",
                     index=list(PREPROCESS_PRESETS).index(now.preset), help="What the model was trained on: "
                     + options_help(PREPROCESS_PRESETS))
    size.number_input("Input size", 0, 4096, now.size or 0, key="model.size", help="Resize the shorter side "
                      "and centre-crop every image to this side (images in a folder or .zip); 0: as they are")
    resize.number_input("Resize to", 0, 4096, now.resize or 0, key="model.resize", help="The shorter side "
                        "before the crop (ImageNet's convention: 256 for an input size of 224); 0: the input size")
    channels.selectbox("Channels", list(IMAGE_CHANNELS), key="model.channels",
                       index=list(IMAGE_CHANNELS).index(now.channels), help=options_help(IMAGE_CHANNELS))


def picked_preprocess(active_spec: str) -> Preprocess:
    """What the picker says now; a custom mean and std of the active data's (set from the CLI or an address, which the
    picker does not show) are kept while its preset is.

    Raises:
        SpecError: a resize smaller than the input size.
    """
    ss, now = st.session_state, split_spec(active_spec)[1]
    preset = ss.get("model.preset") or "unit"
    kept = {"mean": now.mean, "std": now.std} if preset == now.preset else {}
    return Preprocess(preset, ss.get("model.size") or None, ss.get("model.resize") or None,
                      ss.get("model.channels") or "auto", **kept)
