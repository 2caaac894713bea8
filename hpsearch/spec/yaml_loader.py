"""YAML as people write it: `1e-3` is a number.

PyYAML implements YAML 1.1, whose float pattern needs a dot and a signed exponent, so `1e-3`
and `3e4` load as strings. We register the YAML 1.2 float pattern on a private SafeLoader
subclass (the global loader is left alone) and refuse duplicate keys, which PyYAML would
otherwise silently resolve to the last one.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice."""


class HumanLoader(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.2 floats and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise DuplicateKeyError(f"duplicate key `{key}` on line {line}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


HumanLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def load_yaml_text(text: str) -> Any:
    """Parse YAML text with `HumanLoader`."""
    return yaml.load(text, Loader=HumanLoader)  # noqa: S506 - HumanLoader is a SafeLoader
