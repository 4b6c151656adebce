"""HGQ2 reference front (test accuracy vs da4ml LUT cost) for the digits 64-64-32-10 MLP.

Run with the SEPARATE HGQ2 venv (see README.md), not bitsmith's .venv:

    KERAS_BACKEND=torch OMP_NUM_THREADS=1 /work/hgq2-venv/bin/python \
        benchmarks/hgq2/hgq2_digits.py --data /tmp/hgq2/digits_split.npz

The .npz holds bitsmith's own digits split (x_/y_ train, val, test), exported with bitsmith's
loader (see README.md). For each (beta, seed) this trains an HGQ2 MLP with learned per-weight /
per-activation bit widths and the EBOPs penalty ``beta``, calibrates the WRAP activation
quantizers' integer bits on the TRAIN split (``trace_minmax``), scores val/test accuracy with
HGQ2's own quantized forward, traces the model to da4ml combinational logic
(``da4ml.converter.trace_model`` -> ``comb_trace``), records ``comb.cost`` (adder bits, ~LUTs)
and checks that the traced logic reproduces HGQ2's logits bit for bit on the test split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DA_DEFAULT_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def seed_everything(seed: int) -> None:
    import keras
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)


def build_model(beta: float):
    """64 inputs -> 64 -> 32 -> 10, ReLU between layers, no activation on the logits.

    Quantizer setup follows HGQ2's example (example/small_jet_tagger.ipynb): weights/biases 'kbi'
    SAT_SYM, activations ('datalane') 'kif' WRAP with per-element (heterogeneous) bit widths,
    signed input quantizer, logits quantized with an L1 pull on their fractional bits.
    """
    import keras
    from hgq.config import QuantizerConfig, QuantizerConfigScope
    from hgq.layers import QDense
    from hgq.regularizers import MonoL1

    scope0 = QuantizerConfigScope(place="all", k0=1, b0=3, i0=0, default_q_type="kbi", overflow_mode="sat_sym")
    scope1 = QuantizerConfigScope(place="datalane", k0=0, default_q_type="kif", overflow_mode="wrap", f0=3, i0=3)
    with scope0, scope1:
        iq_conf = QuantizerConfig(place="datalane", k0=1)
        oq_conf = QuantizerConfig(place="datalane", k0=1, fr=MonoL1(1e-3))
        model = keras.Sequential([
            keras.Input((64,)),
            QDense(64, beta0=beta, iq_conf=iq_conf, activation="relu", name="dense_0"),
            QDense(32, beta0=beta, activation="relu", name="dense_1"),
            QDense(10, beta0=beta, enable_oq=True, oq_conf=oq_conf, name="dense_2"),
        ])
    return model


def ebops_of(model) -> int:
    from hgq.layers import QLayerBase
    from keras import ops

    total = 0
    for layer in model._flatten_layers():
        if isinstance(layer, QLayerBase) and layer.enable_ebops:
            total += int(ops.convert_to_numpy(layer._ebops))
    return total


def run_one(data: dict, beta: float, seed: int, epochs: int, batch_size: int, lr: float) -> dict:
    import keras
    import torch
    from da4ml.converter import trace_model
    from da4ml.trace import comb_trace
    from hgq.utils import trace_minmax
    from hgq.utils.sugar import FreeEBOPs

    torch.set_num_threads(1)
    seed_everything(seed)
    t0 = time.perf_counter()

    model = build_model(beta)
    steps = epochs * int(np.ceil(len(data["y_train"]) / batch_size))
    sched = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(sched),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    hist = model.fit(data["x_train"], data["y_train"], batch_size=batch_size, epochs=epochs, shuffle=True,
                     validation_data=(data["x_val"], data["y_val"]), callbacks=[FreeEBOPs()], verbose=0)
    train_s = time.perf_counter() - t0

    # Integer bits of the WRAP activation quantizers from the training split only (no val/test leak).
    ebops = int(trace_minmax(model, data["x_train"], batch_size=2048))

    def logits(x):
        return np.asarray(model.predict(x, batch_size=2048, verbose=0), dtype=np.float64)

    out_val, out_test = logits(data["x_val"]), logits(data["x_test"])
    val_acc = float(np.mean(out_val.argmax(1) == data["y_val"]))
    test_acc = float(np.mean(out_test.argmax(1) == data["y_test"]))

    t1 = time.perf_counter()
    inp, out = trace_model(model)
    comb = comb_trace(inp, out)
    cost = float(comb.cost)
    da_test = np.asarray(comb.predict(data["x_test"].astype(np.float64), n_threads=1), dtype=np.float64)
    da_val = np.asarray(comb.predict(data["x_val"].astype(np.float64), n_threads=1), dtype=np.float64)
    trace_s = time.perf_counter() - t1
    mism_test = int(np.sum(da_test != out_test))
    rows_test = int(np.sum(np.any(da_test != out_test, axis=1)))
    mism_val = int(np.sum(da_val != out_val))
    da_test_acc = float(np.mean(da_test.argmax(1) == data["y_test"]))
    wall = time.perf_counter() - t0
    return {
        "beta": beta, "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "val_acc": val_acc, "test_acc": test_acc, "cost": cost,
        "latency": [float(v) for v in comb.latency],
        "ebops": ebops, "final_train_acc": float(hist.history["accuracy"][-1]),
        "final_fit_val_acc": float(hist.history["val_accuracy"][-1]),
        "bit_exact_test": mism_test == 0,
        "mismatched_logits_test": mism_test, "mismatched_rows_test": rows_test,
        "mismatched_logits_val": mism_val, "da4ml_test_acc": da_test_acc,
        "train_s": round(train_s, 2), "trace_s": round(trace_s, 2), "wall_s": round(wall, 2),
    }


def write_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600
    os.replace(tmp, path)


def table(rows: list[dict]) -> str:
    head = f"{'beta':>8} {'seed':>4} {'ep':>4} {'val_acc':>7} {'test_acc':>8} {'cost':>8} {'ebops':>7} {'wall_s':>7} bit_exact"
    lines = [head]
    for r in sorted(rows, key=lambda r: (r["beta"], r["seed"])):
        lines.append(f"{r['beta']:>8.1e} {r['seed']:>4} {r['epochs']:>4} {r['val_acc']:>7.4f} {r['test_acc']:>8.4f} "
                     f"{r['cost']:>8.0f} {r['ebops']:>7} {r['wall_s']:>7.1f} "
                     f"{'yes' if r['bit_exact_test'] else 'NO (%d logits)' % r['mismatched_logits_test']}")
    return "\n".join(lines)


def thresholds(rows: list[dict], levels=(0.95, 0.96, 0.97)) -> dict:
    out = {}
    for t in levels:
        ok = [r for r in rows if r["test_acc"] >= t]
        best = min(ok, key=lambda r: r["cost"]) if ok else None
        out[f"{t:.2f}"] = None if best is None else {"cost": best["cost"], "beta": best["beta"], "seed": best["seed"],
                                                      "test_acc": best["test_acc"], "val_acc": best["val_acc"]}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/hgq2/digits_split.npz")
    p.add_argument("--betas", default="1e-7,3e-7,1e-6,3e-6,1e-5")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--out", default=str(HERE / "results.json"))
    p.add_argument("--append", action="store_true",
                   help="keep the runs already in --out (same data sha256) and add these to them")
    args = p.parse_args(argv)

    import da4ml
    import hgq
    import keras
    import sklearn
    import torch

    data_path = Path(args.data)
    with np.load(data_path) as z:
        data = {k: z[k] for k in z.files}
    for k in list(data):
        data[k] = data[k].astype(np.float32) if k.startswith("x_") else data[k].astype(np.int64)
    sizes = {s: len(data[f"y_{s}"]) for s in ("train", "val", "test")}
    assert sizes == {"train": 1293, "val": 144, "test": 360}, sizes

    meta = {
        "data": str(data_path), "data_sha256": sha256(data_path), "sizes": sizes,
        "versions": {"python": sys.version.split()[0], "hgq2": hgq.__version__, "da4ml": da4ml.__version__,
                     "keras": keras.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__},
        "keras_backend": keras.backend.backend(),
        "model": "64-64-32-10 QDense, ReLU between, logits quantized (no activation)",
        "cost": "da4ml comb_trace(inp, out).cost of da4ml.converter.trace_model(model)",
    }
    rows: list[dict] = []
    if args.append and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        assert old["data_sha256"] == meta["data_sha256"], "--append onto results from different data"
        rows = list(old["runs"])
    betas = [float(b) for b in args.betas.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    t_all = time.perf_counter()
    for beta in betas:
        for seed in seeds:
            if any(x["beta"] == beta and x["seed"] == seed and x["epochs"] == args.epochs for x in rows):
                continue
            r = run_one(data, beta, seed, args.epochs, args.batch_size, args.lr)
            rows.append(r)
            print(f"beta={beta:.1e} seed={seed}: val {r['val_acc']:.4f} test {r['test_acc']:.4f} "
                  f"cost {r['cost']:.0f} ebops {r['ebops']} bit_exact {r['bit_exact_test']} "
                  f"({r['wall_s']:.1f}s)", flush=True)
            write_atomic(Path(args.out), {**meta, "runs": rows, "thresholds": thresholds(rows),
                                          "total_wall_s": round(sum(x["wall_s"] for x in rows), 1)})
    print()
    print(table(rows))
    print(f"\ntotal HGQ2 wall time (sum of runs): {sum(r['wall_s'] for r in rows):.1f}s "
          f"(script {time.perf_counter() - t_all:.1f}s)")
    for t, best in thresholds(rows).items():
        print(f"smallest cost at test acc >= {t}: " +
              ("none" if best is None else f"{best['cost']:.0f} (beta {best['beta']:.1e}, seed {best['seed']}, "
                                           f"test {best['test_acc']:.4f}, val {best['val_acc']:.4f})"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
