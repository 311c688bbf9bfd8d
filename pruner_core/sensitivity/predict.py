"""The outcome of per-unit ratios predicted from a scan: parameter sparsity, FLOP reduction and accuracy drop.

Sparsity and FLOPs follow from the layers' sizes (what the granularity removes at a ratio, rounded as pruning
rounds); the accuracy compounds each unit's drop at its ratio, read from its curve made monotone (the more removed,
the worse) and interpolated between the scanned ratios: each unit keeps the share ``1 - drop / dense`` of the
accuracy the others leave, so the prediction lies in [0, dense accuracy] however many layers lose some (a sum of
single-layer drops went below zero on a 21-layer channel scan). Definitions: *parameter sparsity* is the fraction
of the prunable layers' weights that are zero or removed; *FLOP reduction* the fraction of those layers' FLOPs
removed, counting a masked weight's multiply-adds as removed (what a sparse kernel could skip).
"""

from __future__ import annotations

from pruner_core.pruning.select import round_channels
from pruner_core.sensitivity.result import Sensitivity, UnitCurve

LOSS_WEIGHT = 0.01  # in the allocation, a loss rise of 1 nat weighs as much as 1 point of accuracy drop


class Predictor:
    """Predicts parameter sparsity, FLOP reduction and accuracy drop of per-unit ratios from a scan.

    Args:
        sens: the scan.
        units: the units that may be pruned (the others keep ratio 0).
    """

    def __init__(self, sens: Sensitivity, units: list[UnitCurve]) -> None:
        self.sens, self.units = sens, units
        self.channel = sens.settings["granularity"] == "channel"
        self.layers = sens.layers
        self.total_w = sum(v["weights"] for v in self.layers.values())
        flops = [v["flops"] for v in self.layers.values()]
        self.total_f = None if any(f is None for f in flops) or not sum(flops) else sum(flops)
        self.reader_of = {r: u.name for u in units for r in u.consumers}
        self.unit_of = {m: u.name for u in units for m in u.layers}
        self.curves, self.damage = {}, {}
        for u in units:
            rs = [0.0] + list(u.ratios)
            drops = [0.0] + u.drop(sens.dense_accuracy)
            env, top = [], 0.0
            for d in drops:
                top = max(top, d)
                env.append(top)  # the more removed, the worse: a later lucky ratio does not lower the curve
            self.curves[u.name] = (rs, env)
            # What the allocation ranks by: the accuracy drop, plus the loss rise as a tie-breaker, so that among
            # layers whose accuracy does not move yet the one whose loss rises least gives up more.
            rises = [0.0] + [max(0.0, v - sens.dense_loss) for v in u.loss]
            damage, top = [], 0.0
            for d, r in zip(env, rises, strict=True):
                top = max(top, d + LOSS_WEIGHT * r)
                damage.append(top)
            self.damage[u.name] = (rs, damage)

    def max_ratio(self, name: str) -> float:
        """The largest scanned ratio of unit ``name`` (beyond it nothing is known)."""
        return self.curves[name][0][-1]

    def kept_fractions(self, ratios: dict[str, float]) -> dict[str, float]:
        """The fraction of each layer's weights that ``ratios`` keeps (unit name -> ratio; missing units keep all)."""
        kept = {}
        by = {u.name: u for u in self.units}
        for name, info in self.layers.items():
            if self.channel:
                frac = 1.0
                own = self.unit_of.get(name)
                if own is not None:
                    out = by[own].channels
                    frac *= (out - round_channels(out, round(ratios.get(own, 0.0) * out), None)) / out
                src = self.reader_of.get(name)
                if src is not None:
                    out = by[src].channels
                    frac *= (out - round_channels(out, round(ratios.get(src, 0.0) * out), None)) / out
            else:
                g = info["groups"]
                frac = 1 - round(ratios.get(name, 0.0) * g) / g
            kept[name] = frac
        return kept

    def predict(self, ratios: dict[str, float]) -> dict:
        """``{"param_sparsity", "flop_reduction" (None without FLOP counts), "accuracy_drop", "accuracy"}``."""
        kept = self.kept_fractions(ratios)
        sparsity = 1 - sum(v["weights"] * kept[k] for k, v in self.layers.items()) / self.total_w
        flops = None
        if self.total_f:
            flops = 1 - sum(v["flops"] * kept[k] for k, v in self.layers.items()) / self.total_f
        dense = self.sens.dense_accuracy
        kept = 1.0
        for u in self.units:  # each layer keeps a share of what the others left: drops compound, never below 0
            kept *= max(0.0, 1 - self.drop(u.name, ratios.get(u.name, 0.0)) / dense) if dense > 0 else 0.0
        accuracy = dense * kept
        return {"param_sparsity": sparsity, "flop_reduction": flops, "accuracy_drop": dense - accuracy,
                "accuracy": accuracy}

    def accuracy_at(self, name: str, r: float) -> float:
        """What unit ``name``'s (monotone, interpolated) curve gives at ratio ``r``, the rest dense."""
        return self.sens.dense_accuracy - self.drop(name, r)

    def drop(self, name: str, r: float) -> float:
        """Unit ``name``'s accuracy drop at ratio ``r`` (monotone curve, interpolated)."""
        rs, env = self.curves[name]
        if r <= 0:
            return 0.0
        for j in range(1, len(rs)):
            if r <= rs[j] + 1e-12:
                w = (r - rs[j - 1]) / (rs[j] - rs[j - 1])
                return env[j - 1] + w * (env[j] - env[j - 1])
        return env[-1]

    def ratio_at(self, name: str, t: float) -> float:
        """The largest ratio whose (monotone, interpolated) damage (drop + LOSS_WEIGHT x loss rise) is at most ``t``."""
        rs, env = self.damage[name]
        for j in range(1, len(rs)):
            if env[j] > t:
                if env[j - 1] > t:
                    return rs[j - 1]
                return rs[j - 1] + (t - env[j - 1]) / (env[j] - env[j - 1]) * (rs[j] - rs[j - 1])
        return rs[-1]
