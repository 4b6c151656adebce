"""The rounding experiment: a design exported to hls4ml with the matching rounding and overflow modes
(AP_RND_CONV, AP_SAT) and with hls4ml's defaults (AP_TRN, AP_WRAP), each compiled and run on the test
split against bitsmith. Also: how often a quantizer's input is an exact tie (half-way between two grid
points), where rounding half to even and truncation part.

    python benchmarks/export_rounding.py --load best/trial_N/model.ckpt [--data-path F] [--out DIR]

Needs bitsmith[hls4ml] and g++.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def tie_share(plan, graph, x) -> dict[str, float]:
    """Per quantized step: the share of its input values that lie exactly half-way between grid points."""
    from bitsmith.export.plan import reference

    outs = reference(graph, x)
    previous = x.reshape(len(x), -1).double().numpy()
    shares = {}
    for step in plan.steps:
        if step.data_in is not None:
            scaled = previous * 2.0 ** step.data_in.frac
            shares[step.name] = float(np.mean(scaled - np.floor(scaled) == 0.5))
        previous = outs[step.name]
    return shares


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load", required=True)
    ap.add_argument("--data-path")
    ap.add_argument("--out", help="where the two projects go (default: a temp directory)")
    args = ap.parse_args()

    from rich.console import Console

    from bitsmith.config import load_settings
    from bitsmith.export import load_design
    from bitsmith.export.hls4ml import compile_and_run, write_hls4ml
    from bitsmith.export.plan import compare, reference

    plan, graph, p = load_design(load_settings(None, load_name=args.load, data_path=args.data_path))
    x = p.data.test.x
    print(f"design: {p.settings.model} from {args.load}; test split {len(x)} rows")
    for name, share in tie_share(plan, graph, x).items():
        print(f"  exact ties at the input of {name}: {share * 100:.2f}%")
    ours = reference(graph, x)
    y = p.data.test.y.numpy()
    last = plan.steps[-1].name
    print(f"bitsmith's test accuracy: {np.mean(ours[last].argmax(1) == y) * 100:.2f}%")
    out = Path(args.out or tempfile.mkdtemp())
    for label, rounding, saturation in (("matching (AP_RND_CONV, AP_SAT)", "AP_RND_CONV", "AP_SAT"),
                                        ("hls4ml default (AP_TRN, AP_WRAP)", "AP_TRN", "AP_WRAP")):
        t0 = time.perf_counter()
        model = write_hls4ml(plan, out / rounding, rounding=rounding, saturation=saturation)
        theirs = compile_and_run(model, x.reshape(len(x), -1).double().numpy())
        cmp = compare(ours, theirs, last)
        accuracy = np.mean(np.asarray(theirs[last]).reshape(len(y), -1).argmax(1) == y)
        print(f"{label:34s} max |diff| {cmp.max_abs_diff:.6g}  agreement {cmp.agreement * 100:.2f}%  "
              f"test accuracy {accuracy * 100:.2f}%  "
              f"({time.perf_counter() - t0:.1f} s to write, compile and run)")
    Console().print(f"projects in {out}")


if __name__ == "__main__":
    main()
