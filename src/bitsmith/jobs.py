"""The jobs the command line runs, callable from Python with a ``Settings``.

Each job loads what it needs once, prints to a rich console and returns its
results as plain data.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bitsmith.config import Settings
from bitsmith.errors import BitsmithError


def make_console() -> Console:
    """Output for people; tables keep their columns when piped to a file (no 80-column wrap)."""
    import sys

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


@dataclass
class Prepared:
    settings: Settings
    data: Any  # DataSplits
    model: Any  # nn.Module
    device: Any  # torch.device
    meta: dict


def checkpoint_meta(settings: Settings, data) -> dict[str, Any]:
    """What a checkpoint records so that it can be rebuilt and checked later, the data it was made from
    included (the file, absolute, and the processed contents' digest)."""
    keep = ("max_epochs", "max_steps", "batch_size", "learning_rate", "weight_decay", "optimizer",
            "scheduler", "seed", "val_size")
    path = str(Path(settings.data_path).expanduser().resolve()) if settings.data_path else None
    return {"model": settings.model, "dataset": settings.dataset, "in_shape": list(data.in_shape),
            "n_classes": data.n_classes, "settings": {k: getattr(settings, k) for k in keep},
            "data": {"path": path, "digest": data.info.get("digest"), "label_column": settings.label_column}}


def _data_record(settings: Settings, meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's record of its data (``checkpoint_meta``); {} from older checkpoints."""
    data = meta.get("data")
    if data is None:
        return {}
    if not (isinstance(data, dict) and all(isinstance(data.get(k), (str, type(None)))
                                           for k in ("path", "digest", "label_column"))):
        raise BitsmithError(f"checkpoint {settings.load_name}: its 'data' entry is {str(data)[:80]!r}, not a table "
                            "with the data file's path and digest; it was edited or damaged: load another "
                            "checkpoint")
    return data


def check_output_dir(path) -> None:
    """Fail now, not after the work, when ``path`` cannot be a directory (a file stands on it)."""
    from pathlib import Path

    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise BitsmithError(f"cannot write outputs to {path}: {part} is a file, not a directory; "
                                    "choose another --project-dir / --project")
            return


def from_checkpoint(settings: Settings, meta: dict[str, Any]) -> Settings:
    """``settings`` with the model and data set a checkpoint records, where the user named none.

    A checkpoint is data: the model it names is looked up among registered
    models only. A user's model by import path is built only when the user
    names it (flag or config), never because a file says so.
    """
    from bitsmith.data import checkpoint_val_size
    from bitsmith.models import MODELS

    update = {}
    for key in ("model", "dataset"):
        if key not in settings.model_fields_set and meta.get(key):
            update[key] = meta[key]
    data = _data_record(settings, meta)
    if update.get("dataset", settings.dataset) == meta.get("dataset"):  # the data the checkpoint was made from
        recorded = data.get("path")
        if recorded and "data_path" not in settings.model_fields_set:
            if not Path(recorded).is_file():
                raise BitsmithError(f"checkpoint {settings.load_name} was made from the data file {recorded}, which "
                                    "is not there any more; give its new place with --data-path")
            update["data_path"] = recorded
        if data.get("label_column") and "label_column" not in settings.model_fields_set:
            update["label_column"] = data["label_column"]
        update |= checkpoint_val_size(meta.get("settings"), settings.val_size, "val_size" in settings.model_fields_set)
    name = update.get("model")
    if name is not None and name not in MODELS:
        raise BitsmithError(f"checkpoint {settings.load_name} names model {name!r}, which is not a registered model; "
                            f"if you trust it, name it yourself: --config with model = {name!r}, or the model "
                            "argument of the command")
    if not update:
        return settings
    fresh = settings.model_copy(update=update)
    fresh._source = settings.source
    return fresh


def prepare(settings: Settings, load: bool = True) -> Prepared:
    """Data, model and device for ``settings``; the checkpoint ``load_name`` loaded if given.

    When the checkpoint names its model and data set and the settings did not
    set them, the checkpoint's are used (``Prepared.settings``; the caller's
    settings are left as they are).
    """
    from bitsmith.checkpoint import check_model_name, load_checkpoint, restore
    from bitsmith.data import get_dataset
    from bitsmith.device import resolve_device
    from bitsmith.models import build_model
    from bitsmith.train import seed_everything

    state, meta = ({}, {})
    if load and settings.load_name:
        state, meta = load_checkpoint(settings.load_name, settings.load_type)
        settings = from_checkpoint(settings, meta)
        check_model_name(meta, settings.model, settings.load_name)
        saved = meta.get("dataset")
        if saved and saved != settings.dataset and meta.get("in_shape"):
            raise BitsmithError(f"checkpoint {settings.load_name} was trained on data set {saved!r}, not "
                                f"{settings.dataset!r}; use dataset = {saved!r} or a checkpoint trained on "
                                f"{settings.dataset!r}")
    data = get_dataset(settings.dataset, settings.data_path, settings.label_column, settings.val_size)
    recorded = _data_record(settings, meta).get("digest")
    if recorded and data.info.get("digest") and recorded != data.info["digest"]:
        print(f"warning: the data ({settings.data_path or settings.dataset}) is not what checkpoint "
              f"{settings.load_name} was made from (contents {recorded} then, {data.info['digest']} now); "
              "figures below are on the data as it is now", file=sys.stderr)
    seed_everything(settings.seed)  # initial weights depend on the seed alone
    model = build_model(settings.model, data.in_shape, data.n_classes)
    if meta.get("passes"):
        from bitsmith.passes import rebuild_from_meta

        model = rebuild_from_meta(model, meta, data)
    if state:
        restore(model, state, settings.load_name, settings.model)
    device = resolve_device(settings.accelerator)
    return Prepared(settings, data, model.to(device), device, meta)


def _progress(console: Console, description: str, total: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[metrics]}"), console=console)
    task = bar.add_task(description, total=total, metrics="")

    def update(step: int, total_: int, metrics: dict[str, float]):
        text = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        bar.update(task, completed=step, total=total_, metrics=text)

    return bar, update


def file_digest(path) -> str:
    """The content digest of a file (what a checkpoint or data file is, whatever its name)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# Settings that name where things go, what another command reads, or what the data's digest covers: not inputs.
_NOT_INPUTS = {"project", "project_dir", "strict", "passes", "search", "transform", "load_name", "data_path",
               "log_every_n_steps", "val_size"}


def run_inputs(command: str, settings: Settings, p: Prepared, **extra: Any) -> dict[str, Any]:
    """What a run's results depend on: its settings, the data's contents and the loaded checkpoint's."""
    return {"command": command, "settings": settings.model_dump(mode="json", exclude=_NOT_INPUTS),
            "data": p.data.info.get("digest", p.data.source),
            "checkpoint": file_digest(settings.load_name) if settings.load_name else None, **extra}


def _link_checkpoints(project: Path) -> None:
    """``<project>/checkpoints`` -> ``train/latest``: the path earlier releases wrote, and the README's."""
    from bitsmith.runs import point_latest

    point_latest(project / "train" / "latest", link=project / "checkpoints")


def _link_transformed(runs: Path) -> None:
    """``transform/transformed.ckpt`` -> ``latest/transformed.ckpt``: the path earlier releases wrote."""
    from bitsmith.runs import point_latest

    point_latest(runs / "latest" / "transformed.ckpt", link=runs / "transformed.ckpt")


def train(settings: Settings, console: Console | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train into a run folder of its own, keep best and last checkpoints, evaluate the best on the test split.

    A finished run with the same settings, data and starting checkpoint is reused, not trained again
    (``overwrite``: train again, into that run's folder).
    """
    from bitsmith.checkpoint import load_checkpoint, restore
    from bitsmith.runs import start
    from bitsmith.train import evaluate, fit

    console = console or make_console()
    t0 = time.perf_counter()
    check_output_dir(settings.output_dir)
    p = prepare(settings)
    settings = p.settings
    check_output_dir(settings.output_dir)
    console.print(settings.summary(), highlight=False)
    run = start(settings.output_dir / "train", run_inputs("train", settings, p), overwrite)
    if run.reused:
        summary = run.reuse()
        _link_checkpoints(settings.output_dir)
        console.print(f"reusing {run.dir}: a finished run with the same settings, data and starting checkpoint "
                      f"(test accuracy {summary.get('test_accuracy', float('nan')):.4f}); pass --overwrite to "
                      f"train again\ncheckpoints: {summary.get('best_checkpoint')} (best by validation loss), "
                      f"{summary.get('last_checkpoint')}", highlight=False)
        return {**summary, "reused": True, "run": str(run.dir)}
    bar, update = _progress(console, "train", 1)
    with run, bar:
        result = fit(p.model, p.data, max_epochs=settings.max_epochs, batch_size=settings.batch_size,
                     learning_rate=settings.learning_rate, optimizer=settings.optimizer,
                     weight_decay=settings.weight_decay, scheduler=settings.scheduler, seed=settings.seed,
                     device=p.device, max_steps=settings.max_steps, out_dir=run.dir,
                     meta={**checkpoint_meta(settings, p.data), **_passes_meta(p.meta)},
                     progress=update, log_every_n_steps=settings.log_every_n_steps)
    state, _ = load_checkpoint(result.best_path)
    restore(p.model, state, result.best_path, settings.model)
    test = evaluate(p.model, p.data.test, p.device)
    summary = {
        "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "best_val_loss": min(h["val_loss"] for h in result.history),
        "epochs": len(result.history), "steps": result.steps,
        "train_seconds": result.seconds, "total_seconds": time.perf_counter() - t0,
        "samples_per_second": result.samples / result.seconds if result.seconds else 0.0,
        "best_checkpoint": str(result.best_path), "last_checkpoint": str(result.last_path),
    }
    run.finish(summary)
    _link_checkpoints(settings.output_dir)
    console.print(
        f"test accuracy {test['accuracy']:.4f}  test loss {test['loss']:.4f}  "
        f"({len(p.data.test)} samples, best of {summary['epochs']} epochs)\n"
        f"time {summary['total_seconds']:.1f} s (training {result.seconds:.1f} s, "
        f"{summary['samples_per_second']:,.0f} samples/s)\n"
        f"checkpoints: {result.best_path} (best by validation loss), {result.last_path}; "
        f"{settings.output_dir / 'checkpoints'} -> the latest run", highlight=False)
    return {**summary, "reused": False, "run": str(run.dir)}


def _passes_meta(meta: dict) -> dict:
    """A fine-tuned transformed model keeps the passes that shaped it."""
    return {"passes": meta["passes"]} if meta.get("passes") else {}


def test(settings: Settings, console: Console | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint on the test split."""
    from bitsmith.train import evaluate

    console = console or make_console()
    if not settings.load_name:
        raise BitsmithError("test needs a checkpoint: pass --load CKPT (or set load_name in the config)")
    p = prepare(settings)
    settings = p.settings
    console.print(f"model={settings.model} dataset={settings.dataset} checkpoint={settings.load_name}",
                  highlight=False)
    t0 = time.perf_counter()
    result = evaluate(p.model, p.data.test, p.device)
    seconds = time.perf_counter() - t0
    console.print(f"test accuracy {result['accuracy']:.4f}  test loss {result['loss']:.4f}  "
                  f"({len(p.data.test)} samples, {seconds:.2f} s)", highlight=False)
    return {"test_accuracy": result["accuracy"], "test_loss": result["loss"], "seconds": seconds}


def transform(settings: Settings, console: Console | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Apply the ``[passes.*]`` tables in order; report, evaluate and save the result in a run folder of its own.

    A finished run with the same passes, checkpoint and data is reused (``overwrite``: run it again).
    """
    import csv
    import io
    import json

    from bitsmith.checkpoint import save_checkpoint
    from bitsmith.files import write_atomic
    from bitsmith.graph import trace
    from bitsmith.passes import (
        MASE_ONLY,
        TRANSFORMS,
        apply_passes,
        parse_passes,
        quant_table,
        render_report,
        report_pass,
    )
    from bitsmith.passes.widths import print_widths, width_rows
    from bitsmith.runs import start
    from bitsmith.train import evaluate

    console = console or make_console()
    notes = settings.notes
    passes = parse_passes(settings.passes, settings.source)  # every table checked before any work
    for name in settings.passes:
        if name in MASE_ONLY:
            notes.warn(f"[passes.{name}] is one of MASE's own output passes; bitsmith writes its reports itself, "
                       "so it is ignored")
    if not passes:
        raise BitsmithError("transform needs at least one [passes.<name>] table in the config, "
                            "e.g. [passes.quantize] or [passes.channel_multiply]")
    check_output_dir(settings.output_dir / "transform")
    p = prepare(settings)
    settings = p.settings  # the checkpoint may name the model and data set, and so the project
    check_output_dir(settings.output_dir / "transform")
    applied = [*p.meta.get("passes", []),
               *([n, c.model_dump(mode="json")] for n, c in passes if n in TRANSFORMS)]
    run = start(settings.output_dir / "transform",
                run_inputs("transform", settings, p, passes=[[n, c.model_dump(mode="json")] for n, c in passes]),
                overwrite)
    out = run.dir
    if run.reused:
        summary = run.reuse()
        _link_transformed(run.dir.parent)
        console.print(f"reusing {run.dir}: a finished run with the same passes, checkpoint and data (test accuracy "
                      f"{summary.get('test_accuracy_before', float('nan')):.4f} before, "
                      f"{summary.get('test_accuracy', float('nan')):.4f} after the passes); pass --overwrite to run "
                      f"it again\nwritten: {summary.get('checkpoint')}", highlight=False)
        return {**summary, "reused": True, "run": str(run.dir)}
    with run:  # a failure before anything is written leaves no run folder
        if not settings.load_name:
            console.print("note: no checkpoint given (--load); transforming freshly initialised weights",
                          highlight=False)
        base = trace(p.model.cpu().eval(), p.data.in_shape)
        before = evaluate(base.gm, p.data.test)
        graph, infos = apply_passes(base, passes)
        for info in infos.values():
            for message in info.get("ignored", []):
                notes.warn(message)
        _, report = report_pass(graph)
        render_report(report, console)
        rows = quant_table(graph)
        _print_quant_table(rows, console)
        if "luts" in infos:
            from bitsmith.passes.luts import print_luts

            print_luts(infos["luts"], notes, console)
        widths = width_rows(graph)  # bits the quantized weights really use, and how many are pruned
        print_widths(widths, console)  # nothing when no Linear / Conv2d is quantized
        after = evaluate(graph.gm, p.data.test)
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(out / "quantize_summary.csv", table.getvalue(), "table")
        meta = {**checkpoint_meta(settings, p.data), "passes": applied, "test_accuracy": after["accuracy"]}
        ckpt = save_checkpoint(out / "transformed.ckpt", graph.gm, meta)
        summary = {"test_accuracy_before": before["accuracy"], "test_accuracy": after["accuracy"],
                   "test_loss": after["loss"], "checkpoint": str(ckpt), "passes": applied,
                   "totals": report["totals"], "pass_info": {k: v for k, v in infos.items() if k != "quantize"},
                   "widths": widths}
        write_atomic(out / "transform.json", json.dumps(summary, indent=2, default=str), "summary")
    run.finish(summary)
    _link_transformed(out.parent)
    console.print(f"test accuracy {before['accuracy']:.4f} before, {after['accuracy']:.4f} after the passes "
                  f"({len(p.data.test)} samples)\nwritten: {ckpt} (load with `bitsmith test --load`), "
                  f"{out / 'quantize_summary.csv'}, {out / 'transform.json'}; "
                  f"{out.parent / 'latest'} -> this run", highlight=False)
    return {**summary, "reused": False, "run": str(run.dir)}


def _print_quant_table(rows: list[dict[str, Any]], console: Console) -> None:
    from rich.table import Table

    table = Table(title="quantization", title_justify="left")
    for col in ("node", "type", "format", "data_in", "weight", "bias"):
        table.add_column(col)
    for r in rows:
        cells = [f"{r[f'{p}_width']}/{r[f'{p}_frac_width']}" if r[f"{p}_width"] != "" else ""
                 for p in ("data_in", "weight", "bias")]
        table.add_row(r["node"], r["type"], r["format"], *cells)
    console.print(table)
    console.print("widths as width/fraction bits", style="dim")
