"""Matching a pass's config tables to nodes: by layer type, node name or regex."""

from __future__ import annotations

import re
from typing import Any

from bitsmith.errors import BitsmithError, closest
from bitsmith.graph import Graph

BY = ("type", "name", "regex_name")


def _names(graph: Graph) -> list[str]:
    return [n for n, i in graph.nodes.items() if i.op == "call_module"]


def check_node_name(graph: Graph, name: str, where: str) -> None:
    if name not in graph.nodes:
        modules = _names(graph)
        near = closest(name, modules)
        hint = f"did you mean {near!r}? " if near else ""
        raise BitsmithError(f"{where}: no node named {name!r} in the graph; {hint}nodes: {', '.join(modules)}")


def select(graph: Graph, tables: dict[str, Any], by: str, where: str) -> dict[str, tuple[str, Any]]:
    """Node name -> (the table key that matched it, its value); unmatched nodes get ``default``.

    ``by = "type"``: keys are layer types (``linear``); ``"name"``: node names;
    ``"regex_name"``: regular expressions matched against whole node names, first match wins.
    """
    if by not in BY:
        raise BitsmithError(f"{where}: by = {by!r}; use one of {', '.join(BY)}")
    keys = [k for k in tables if k != "default"]
    if by == "name":
        for key in keys:
            check_node_name(graph, key, where)
    elif by == "regex_name":
        patterns = {}
        for key in keys:
            try:
                patterns[key] = re.compile(key)
            except re.error as e:
                raise BitsmithError(f"{where}: {key!r} is not a valid regular expression ({e})") from None
    out = {}
    for name in _names(graph):
        info = graph.nodes[name]
        if by == "type":
            key = info.kind if info.kind in tables else "default"
        elif by == "name":
            key = name if name in tables else "default"
        else:
            key = next((k for k in keys if patterns[k].fullmatch(name)), "default")
        if key in tables:
            out[name] = (key, tables[key])
    return out


def split_tables(config: dict[str, Any], scalar_keys: set[str], where: str) -> dict[str, Any]:
    """The per-layer ``[<pass>.<key>.config]`` tables of a pass config; checks the scalar keys."""
    from bitsmith.config import unknown_key_message

    tables = {}
    for key, value in config.items():
        if isinstance(value, dict):
            if "config" not in value or not isinstance(value["config"], dict) or len(value) != 1:
                raise BitsmithError(f"{where}.{key}: expected a table [{where}.{key}.config]")
            tables[key] = value["config"]
        elif key not in scalar_keys:
            raise BitsmithError(unknown_key_message(key, scalar_keys, where))
    return tables
