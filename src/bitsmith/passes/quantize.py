"""The fixed-point quantization transform: ``[passes.quantize]``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from bitsmith.errors import BitsmithError
from bitsmith.graph import Graph, with_modules
from bitsmith.passes._select import select, unmatched
from bitsmith.passes.registry import layer_tables, parse_pass, register_pass
from bitsmith.quant import (
    NEEDS,
    QUANTIZED,
    UNSIGNED_INPUT,
    IntegerConfig,
    dequantized_copy,
    fixed,
    float_type,
    quantized_copy,
)
from bitsmith.schema import Table

MAX_WIDTH = 32
MAX_FRAC = 64  # |frac| beyond this leaves nothing of float32's exponent range worth quantizing to
KNOWN_TYPES = frozenset(t.__name__.lower() for t in QUANTIZED)


def _width():
    return Field(None, ge=1, le=MAX_WIDTH)


def _frac():
    return Field(None, ge=-MAX_FRAC, le=MAX_FRAC)


class QuantizeSettings(Table):
    """``[passes.quantize]``'s own keys."""

    by: Literal["type", "name", "regex_name"] = "type"
    report: bool | None = None  # MASE prints a summary with it; bitsmith's transform always reports


class IntegerLayer(Table):
    """``[passes.quantize.<type or node>.config]``. "NA" fractions mean ``width // 2``."""

    name: Literal["integer"] | None = None
    data_in_width: int | None = _width()
    data_in_frac_width: int | None = _frac()
    weight_width: int | None = _width()
    weight_frac_width: int | None = _frac()
    bias_width: int | None = _width()
    bias_frac_width: int | None = _frac()
    bypass: bool = False  # MASE: leave the layer in float
    # MASE keys of its fixed-point / LogicNets flows that bitsmith does not implement:
    # accepted so those files load, and each one set is reported as ignored.
    data_out_width: int | None = None
    data_out_frac_width: int | None = None
    floor: bool | None = None
    additional_layers_inputs: Any = None
    additional_layers_outputs: Any = None

    UNSUPPORTED: ClassVar[tuple[str, ...]] = ("data_out_width", "data_out_frac_width", "floor",
                                              "additional_layers_inputs", "additional_layers_outputs")

    @property
    def inert(self) -> bool:
        """Leaves the layer as it is."""
        return self.name is None or self.bypass

    @staticmethod
    def reaches(module) -> bool:
        """Whether a broad table (default, by type, by regex) applies to ``module``."""
        return float_type(module) in QUANTIZED


def layer_config(cfg: IntegerLayer, base: type, where: str) -> IntegerConfig | None:
    """One layer's table -> its formats (None: leave the layer as it is)."""
    if cfg.name is None or cfg.bypass:
        return None
    fmts = {}
    for part in NEEDS[base]:
        width = getattr(cfg, f"{part}_width")
        if width is None:
            raise BitsmithError(f"[{where}] name = \"integer\" on a {base.__name__} needs {part}_width "
                                f"(1 to {MAX_WIDTH} bits)")
        signed = not (part == "data_in" and base in UNSIGNED_INPUT)
        fmts[part] = fixed(width, getattr(cfg, f"{part}_frac_width"), signed)
    return IntegerConfig(**fmts)


def unsupported(where: str, given: dict[str, Any]) -> str:
    """A warning for MASE keys bitsmith accepts but does not implement ("" when none is set)."""
    keys = [k for k in IntegerLayer.UNSUPPORTED if given.get(k) not in (None, False, [None], [False])]
    if not keys:
        return ""
    return (f"[{where}] {', '.join(keys)}: MASE's output quantization / floor rounding is not implemented "
            "in bitsmith, so these keys are ignored")


@register_pass("quantize", QuantizeSettings, IntegerLayer, unsupported=unsupported)
def quantize_pass(graph: Graph, config: Any) -> tuple[Graph, dict[str, Any]]:
    """Replace Linear, Conv2d and ReLU modules by fixed-point ones, per the config.

    ``config``: ``by`` ("type" | "name" | "regex_name"), a ``default`` table and
    one table per type, name or pattern, each ``{"config": {...}}``. Keys that
    match no node are ignored and listed in ``info["ignored"]``.
    """
    cfg = parse_pass("quantize", config)
    tables = layer_tables(cfg)
    where = "passes.quantize"
    chosen, missed = select(graph, tables, cfg.by, where)
    replacements, summary = {}, {}
    for name, key in chosen.items():
        info = graph.nodes[name]
        module = graph.gm.get_submodule(info.target)
        base = float_type(module)
        table = tables[key]
        if base not in QUANTIZED:
            if key == "default" or cfg.by == "regex_name" or table.name is None:
                continue  # broad selectors only reach what they can quantize; "NA" leaves anything alone
            raise BitsmithError(f"[{where}.{key}.config]: node {name!r} is a {base.__name__}, which cannot be "
                                f"quantized; quantizable types: {', '.join(t.__name__ for t in QUANTIZED)}")
        qcfg = layer_config(table, base, f"{where}.{key}.config")
        if qcfg is None:
            plain = dequantized_copy(module)
            if plain is not module:  # "NA" on an already quantized layer returns it to float
                replacements[info.target] = plain
            continue
        replacements[info.target] = quantized_copy(module, qcfg)
        summary[name] = qcfg.as_dict()
    new = with_modules(graph, replacements, reshape=False)
    ignored = [unmatched(graph, k, cfg.by, where) for k in missed]
    ignored += [unsupported(f"{where}.{k}.config", t.model_dump(exclude_unset=True)) for k, t in tables.items()
                if k in chosen.values()]
    return new, {"quantized": summary, "ignored": [m for m in ignored if m]}


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
