"""Reading YAML that a visitor may have written: limits checked before anything is built from the text, and a loader
that refuses a key given twice (PyYAML silently keeps the last). Safe loading only: nothing is constructed."""

from __future__ import annotations

import yaml

MAX_TEXT = 1_000_000  # characters: a recipe is a few lines (a per-layer map of a large model, some kB)
MAX_ALIASES = 50  # a "billion laughs" recipe expands a few aliases into gigabytes
MAX_DEPTH = 10  # the deepest a valid recipe nests is 2 (finetune: {...}); a deep one only exhausts the stack


def yaml_shape_problem(text: str) -> str | None:
    """What makes ``text`` too large, too deeply nested or too alias-heavy to read, as a sentence; else None.
    A syntax error is left to the parser, which names its line."""
    if len(text) > MAX_TEXT:
        return f"the recipe is {len(text):,} characters; a recipe may have at most {MAX_TEXT:,}"
    aliases = depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    return f"the recipe uses more than {MAX_ALIASES} YAML aliases (*name); a recipe needs none: write the values out"
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return f"the recipe nests more than {MAX_DEPTH} levels deep; a recipe nests 2 (e.g. finetune: {{epochs: 1}})"
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is given twice", key_node.start_mark)
            if isinstance(key, str | int | float | bool):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)
