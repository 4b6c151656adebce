"""The fixed-point quantization transform: ``[passes.quantize]``."""

from __future__ import annotations

from typing import Any

from bitsmith.config import check_keys
from bitsmith.errors import BitsmithError
from bitsmith.graph import Graph, with_modules
from bitsmith.passes._select import select, split_tables
from bitsmith.quant import NEEDS, QUANTIZED, IntegerConfig, dequantized_copy, float_type, parse_fixed, quantized_copy

PASS_KEYS = {"by"}
INTEGER_KEYS = {"name", "data_in_width", "data_in_frac_width", "weight_width", "weight_frac_width",
                "bias_width", "bias_frac_width", "bypass"}
KNOWN_TYPES = {t.__name__.lower() for t in QUANTIZED}


def parse_layer_config(cfg: Any, base: type, where: str) -> IntegerConfig | None:
    """One layer's table -> its formats (None: leave the layer as it is)."""
    if not isinstance(cfg, dict):
        raise BitsmithError(f"{where}: expected a table with name = \"integer\" or \"NA\", got {cfg!r}")
    check_keys(cfg, INTEGER_KEYS, where)
    name = cfg.get("name")
    if name is None:
        return None
    if name != "integer":
        raise BitsmithError(f"{where}: name = {name!r}; the supported formats are \"integer\" "
                            "(signed fixed point) and \"NA\" (leave the layer as it is)")
    parts = NEEDS[base]
    fmts = {p: parse_fixed(cfg, p, where) for p in parts}
    return IntegerConfig(**fmts)


def quantize_pass(graph: Graph, config: dict[str, Any]) -> tuple[Graph, dict[str, Any]]:
    """Replace Linear, Conv2d and ReLU modules by fixed-point ones, per the config.

    ``config``: ``by`` ("type" | "name" | "regex_name"), a ``default`` table and
    one table per type, name or pattern, each ``{"config": {...}}``.
    """
    where = "passes.quantize"
    tables = split_tables(config, PASS_KEYS, where)
    by = config.get("by", "type")
    if by == "type":
        for key in tables:
            if key != "default" and key not in KNOWN_TYPES:
                raise BitsmithError(f"{where}: cannot quantize layers of type {key!r}; quantizable types: "
                                    f"{', '.join(sorted(KNOWN_TYPES))} (or key the table by node name with by = \"name\")")
    replacements, summary = {}, {}
    for name, (key, cfg) in select(graph, tables, by, where).items():
        info = graph.nodes[name]
        module = graph.gm.get_submodule(info.target)
        base = float_type(module)
        table = f"{where}.{key}.config"
        if base not in QUANTIZED:
            if key == "default" or by == "regex_name" or cfg.get("name") is None:
                continue  # broad selectors only reach what they can quantize; "NA" leaves anything alone
            raise BitsmithError(f"{table}: node {name!r} is a {base.__name__}, which cannot be quantized; "
                                f"quantizable types: {', '.join(t.__name__ for t in QUANTIZED)}")
        qcfg = parse_layer_config(cfg, base, table)
        if qcfg is None:
            plain = dequantized_copy(module)
            if plain is not module:  # "NA" on an already quantized layer returns it to float
                replacements[info.target] = plain
            continue
        replacements[info.target] = quantized_copy(module, qcfg)
        summary[name] = qcfg.as_dict()
    new = with_modules(graph, replacements, reshape=False)
    return new, {"quantized": summary, "table": quant_table(new)}


def quant_table(graph: Graph) -> list[dict[str, Any]]:
    """One row per module node: its type and formats (``float`` when not quantized)."""
    rows = []
    for name, info in graph.nodes.items():
        if info.op != "call_module":
            continue
        q = info.quant or {}
        row = {"node": name, "type": info.module_type, "format": q.get("name", "float")}
        for part in ("data_in", "weight", "bias"):
            row[f"{part}_width"] = q.get(f"{part}_width", "")
            row[f"{part}_frac_width"] = q.get(f"{part}_frac_width", "")
        rows.append(row)
    return rows
