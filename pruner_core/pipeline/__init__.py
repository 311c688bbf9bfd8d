"""Run a recipe: prune -> fine-tune -> measure -> save, and the run folders it saves to.

Importing the package registers the run-folder model format (:mod:`pruner_core.pipeline.replay`), so a run folder
is a model spec wherever the pipeline is in use.
"""

from pruner_core.pipeline import replay  # noqa: F401  (registers the "run" model format)
