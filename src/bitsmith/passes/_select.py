"""Matching per-layer tables to nodes: by layer type, node name or regex.

A key that matches nothing is ignored, as MASE ignores it (its published files
carry type-keyed tables in by-name files and the reverse); the caller warns,
or refuses under ``--strict``, with the message ``unmatched`` builds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bitsmith.errors import BitsmithError, closest
from bitsmith.graph import Graph

BY = ("type", "name", "regex_name")


def module_nodes(graph: Graph) -> list[str]:
    return [n for n, i in graph.nodes.items() if i.op == "call_module"]


def select(graph: Graph, keys: Iterable[str], by: str, where: str) -> tuple[dict[str, str], list[str]]:
    """Node name -> the key of the table that applies to it, and the keys that match no node.

    ``by = "type"``: keys are layer types (``linear``); ``"name"``: node names;
    ``"regex_name"``: regular expressions matched against whole node names,
    first match wins. Nodes no key matches get ``default`` when there is one.
    """
    keys = list(keys)
    named = [k for k in keys if k != "default"]
    patterns = {}
    if by == "regex_name":
        for key in named:
            try:
                patterns[key] = re.compile(key)
            except re.error as e:
                raise BitsmithError(f"[{where}.{key}]: not a valid regular expression ({e})") from None
    # MASE spells some types with an underscore (batch_norm2d); bitsmith's are class names (batchnorm2d).
    types = {k.replace("_", ""): k for k in named} if by == "type" else {}
    chosen: dict[str, str] = {}
    used: set[str] = set()
    for name in module_nodes(graph):
        if by == "type":
            key = types.get(graph.nodes[name].kind)
        elif by == "name":
            key = name if name in named else None
        else:
            key = next((k for k in named if patterns[k].fullmatch(name)), None)
        if key is not None:
            used.add(key)
        elif "default" in keys:
            key = "default"
        if key is not None:
            chosen[name] = key
    return chosen, [k for k in named if k not in used]


def unmatched(graph: Graph, key: str, by: str, where: str) -> str:
    """One line: the key matched nothing, is ignored, and the likely fix."""
    names = module_nodes(graph)
    kinds = sorted({graph.nodes[n].kind for n in names})
    if by == "name" and key in kinds:
        hint = f"{key!r} is a layer type: tables keyed by type need by = \"type\""
    elif by == "type" and key in names:
        hint = f"{key!r} is a node name: tables keyed by node need by = \"name\""
    else:
        pool = kinds if by == "type" else names
        near = closest(key, pool)
        hint = (f"did you mean {near!r}?" if near else
                f"this model's {'layer types' if by == 'type' else 'nodes'}: {', '.join(pool)}")
    what = {"type": "layer type", "name": "node", "regex_name": "node name"}[by]
    return f"[{where}.{key}] matches no {what} of this model (by = \"{by}\") and is ignored; {hint}"
