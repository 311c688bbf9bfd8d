"""Sensitivity analysis and ratio recommendation: which layers can lose how much, before committing a recipe.

1. :func:`pruner_core.sensitivity.scan.scan` prunes one *unit* at a time (a layer, or for ``channel`` a coupled
   group) at each ratio, without fine-tuning, and measures accuracy and loss on the first test images.
2. :func:`pruner_core.sensitivity.allocate.recommend` turns the curves into per-layer ratios that meet a target
   (parameter sparsity, FLOP reduction or a maximum accuracy drop), sensitive layers keeping more, as a recipe.
3. :func:`pruner_core.sensitivity.refine.apply_and_measure` prunes with a recipe without fine-tuning and measures
   what it did; :func:`pruner_core.sensitivity.refine.refine` chooses among allocations by measuring them.

Modules, bottom to top: ``result`` (the typed results), ``engine`` (the fx suffix evaluator), ``units`` (what a
scan prunes and how it puts it back), ``latency`` (channel groups timed against kept channels), ``scan``,
``cache`` (scans stored on disk), ``search`` (one bisection), ``predict`` (the outcome of ratios, from the curves),
``allocate`` (recommend, baselines), ``refine``. Import each name from its module; this package exports nothing.
"""
