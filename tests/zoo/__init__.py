"""A zoo of small networks written the way their public counterparts are (torchvision / timm / common layouts).

``tests.zoo.architectures.ZOO`` is the registry; every entry's factory is importable as a model spec
``tests.zoo.architectures:NAME`` (the tests run with ``pythonpath = .``). ``tests.zoo.cells`` drives each
(architecture, step) cell through the public API; ``tests.zoo.coverage`` runs them all and reports the share
that passes.
"""
