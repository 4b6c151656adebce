"""The ``bitsmith`` command line. Imports stay light until a command runs."""

from __future__ import annotations

import argparse
import sys

from bitsmith.errors import BitsmithError

# flag -> settings key, with the argparse type; shared by every command.
_SETTING_FLAGS: list[tuple[str, str, type, str]] = [
    ("--max-epochs", "max_epochs", int, "training epochs"),
    ("--max-steps", "max_steps", int, "stop after this many optimizer steps"),
    ("--batch-size", "batch_size", int, "samples per batch"),
    ("--learning-rate", "learning_rate", float, "learning rate"),
    ("--weight-decay", "weight_decay", float, "weight decay"),
    ("--optimizer", "optimizer", str, "adam, adamw or sgd"),
    ("--scheduler", "scheduler", str, "cosine or none"),
    ("--seed", "seed", int, "seed for init, shuffling and samplers"),
    ("--accelerator", "accelerator", str, "auto, cpu or gpu"),
    ("--project", "project", str, "outputs go to <project-dir>/<project>/"),
    ("--project-dir", "project_dir", str, "outputs go to <project-dir>/<project>/"),
    ("--data-path", "data_path", str, "a local data file (jsc: CSV, Parquet or HDF5; table: CSV, Parquet or NPZ)"),
    ("--label-column", "label_column", str, "the column of class labels in your own file (data set table)"),
    ("--val-size", "val_size", float, "share of the training part kept for validation, 0 < v < 0.9 (default 0.1)"),
    ("--load", "load_name", str, "checkpoint to start from"),
    ("--load-type", "load_type", str, "pl (bitsmith/Lightning checkpoint) or pt (bare state dict)"),
]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="registered model name, or package.module:factory")
    p.add_argument("dataset", nargs="?", help="registered data set name")
    p.add_argument("--config", help="TOML file (MASE layout); flags override it")
    for flag, dest, typ, text in _SETTING_FLAGS:
        p.add_argument(flag, dest=dest, type=typ, help=text)


def _add_strict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict", action="store_const", const=True, dest="strict",
                   help="treat entries MASE would ignore (a table matching no node) as errors")


def _add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"{what} even when a finished run with the same inputs exists, writing over its folder "
                        "(default: reuse it)")


def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="Optuna storage: a *.journal file (default under the project), "
                                     "sqlite:///FILE.db or postgresql://...")
    p.add_argument("--study-name", dest="study_name", help="the study to use (default: the project name)")
    p.add_argument("--storage-timeout", dest="storage_timeout", type=float, default=10.0,
                   help="seconds to wait for a database storage to answer (default 10)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitsmith", description="Fit small neural networks to a hardware budget.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train a model and keep its best checkpoint")
    _add_common(p)
    _add_overwrite(p, "train again")
    p = sub.add_parser("test", help="evaluate a checkpoint on the test split")
    _add_common(p)
    p = sub.add_parser("transform", help="apply the [passes.*] tables of a config to a checkpoint")
    _add_common(p)
    _add_strict(p)
    _add_overwrite(p, "run the passes again")
    p = sub.add_parser("search", help="search a design space of a model with Optuna")
    _add_common(p)
    _add_strict(p)
    _add_storage(p)
    p.add_argument("--fresh", action="store_true", help="start a new study instead of resuming (keeps the old one)")
    p.add_argument("--sampler", help="override [search.strategy.setup] sampler")
    p.add_argument("--n-trials", dest="n_trials", type=int, help="override [search.strategy.setup] n_trials")
    p.add_argument("--n-workers", dest="n_workers", type=int, default=1,
                   help="worker processes on this machine sharing the study (default 1)")
    p.add_argument("--export", help="hls4ml, qonnx or verilog: also export every design on the front, into "
                                    "best/trial_N/ (needs bitsmith[hls4ml]; verilog: bitsmith[da])")
    p = sub.add_parser("export", help="write a quantized checkpoint as an hls4ml project, a QONNX model or Verilog")
    _add_common(p)
    p.add_argument("--to", required=True, help="hls4ml, qonnx or verilog")
    p.add_argument("--output-dir", dest="output_dir", help="hls4ml, verilog: the directory to write")
    p.add_argument("--output", help="qonnx: the .onnx file to write")
    p.add_argument("--backend", default="Vitis", help="hls4ml backend: Vitis (default) or Vivado")
    p.add_argument("--io-type", dest="io_type", default="io_parallel",
                   help="hls4ml I/O type: io_parallel (default) or io_stream")
    p.add_argument("--strategy", default="latency",
                   help="hls4ml: latency (default) or distributed_arithmetic (adder graphs solved by da4ml; "
                        "needs bitsmith[da]); the project then states each layer's LUT cost")
    p.add_argument("--synth", help="verilog: yosys, to map the design to 7-series LUTs and report them per layer")
    p.add_argument("--simulator", default="auto",
                   help="verilog --verify: auto (default), icarus or verilator")
    p.add_argument("--verify", action="store_true",
                   help="run the test split through the export and through bitsmith and compare them")
    p = sub.add_parser("compare", help="compare samplers on a search's space: ground truth, many seeds, plots")
    _add_common(p)
    _add_strict(p)
    p.add_argument("--samplers", default="tpe,random", help="comma-separated sampler names (default tpe,random)")
    p.add_argument("--with", dest="with_configs", action="append", metavar="CONFIG",
                   help="another search config compared in the same run, with its own sampler (repeatable, or "
                        "comma-separated); it must have the same model, data and objective metrics")
    p.add_argument("--seeds", type=int, default=5, help="runs per sampler, seeds seed..seed+K-1 (default 5)")
    p.add_argument("--trials", type=int, help="trials per run (default: the config's n_trials)")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="'near the optimum': within this fraction of the objective's range (default 0.01)")
    _add_overwrite(p, "run the comparison again")
    p.add_argument("--rebuild-truth", dest="rebuild_truth", action="store_true",
                   help="evaluate the ground-truth table again (a damaged or old one); the old file is kept as "
                        ".bak beside it")
    p = sub.add_parser("report", help="write the tables, plots and best checkpoints of a stored study")
    _add_common(p)
    _add_storage(p)
    p = sub.add_parser("dashboard", help="serve a study in optuna-dashboard (pip install 'bitsmith[dashboard]')")
    p.add_argument("--project-dir", dest="project_dir", default="bitsmith_output",
                   help="the project directory whose studies to show (default bitsmith_output)")
    p.add_argument("--project", help="one project under --project-dir (default: every study journal found)")
    p.add_argument("--storage", help="an Optuna storage URL or journal file instead of --project-dir")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    sub.add_parser("models", help="list the registered models")
    sub.add_parser("datasets", help="list the registered data sets")
    return parser


def _version() -> str:
    from bitsmith import __version__

    return f"bitsmith {__version__}"


def settings_from_args(args: argparse.Namespace):
    from bitsmith.config import load_settings

    flags = {dest: getattr(args, dest, None) for _, dest, _, _ in _SETTING_FLAGS}
    flags["model"], flags["dataset"] = args.model, args.dataset
    flags["strict"] = getattr(args, "strict", None)
    settings = load_settings(args.config, **flags)
    check_tables(settings)
    return settings


def check_tables(settings) -> None:
    """Check the ``[passes.*]`` and ``[search]`` tables with their owners' schemas, whatever the command:
    a typo in a file is reported before any work (the graph-dependent checks come when a command runs)."""
    if settings.passes:
        from bitsmith.passes import parse_passes

        parse_passes(settings.passes, settings.source)
    if settings.search:
        from bitsmith.search.config import parse_search

        parse_search(settings.search, settings.seed, source=settings.source)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("models", "datasets"):
        if args.command == "models":
            from bitsmith.models.registry import DESCRIPTIONS
            from bitsmith.models.registry import MODELS as names
        else:
            from bitsmith.data.registry import DATASETS as names
            from bitsmith.data.registry import DESCRIPTIONS
        # name first, so `cut -d' ' -f1` still gives the bare names
        width = max(map(len, names))
        print("\n".join(f"{n:<{width}}  {DESCRIPTIONS.get(n, '')}".rstrip() for n in sorted(names)))
        return 0
    if args.command == "dashboard":
        from bitsmith.dashboard import serve_from_args

        return serve_from_args(args)
    if args.command == "export":
        return _export(args)
    settings = settings_from_args(args)
    if args.command == "compare":
        from bitsmith.search.compare import run_compare
        from bitsmith.search.compare.strategies import parse_with

        # Each --with config is read as --config is, under the same flags (checkpoint, data, seed).
        others = []
        for path in parse_with(args.with_configs):
            try:
                others.append(settings_from_args(argparse.Namespace(**{**vars(args), "config": path})))
            except BitsmithError as e:
                raise BitsmithError(f"--with {path}: {e}") from None
        run_compare(settings, args.samplers, args.seeds, args.trials, args.tolerance,
                    rebuild_truth=args.rebuild_truth, overwrite=args.overwrite, others=others)
        return 0
    if args.command in ("search", "report"):
        from bitsmith.search import StorageOptions, run_search, write_report

        store = StorageOptions(args.storage, args.study_name, args.storage_timeout)
        if args.command == "report":
            write_report(settings, store)
            return 0
        result = run_search(settings, storage=store, fresh=args.fresh, n_workers=args.n_workers,
                            overrides={"sampler": args.sampler, "n_trials": args.n_trials}, export=args.export)
        return 130 if result["interrupted"] else 1 if result.get("failed") else 0
    from bitsmith import jobs

    if args.command in ("train", "transform"):
        getattr(jobs, args.command)(settings, overwrite=args.overwrite)
    else:
        jobs.test(settings)
    return 0


def _export(args: argparse.Namespace) -> int:
    from bitsmith.export import check_target, export

    from bitsmith.export import DIRECTORIES

    check_target(args.to, args.backend, args.io_type, strategy=args.strategy, synth=args.synth,
                 simulator=args.simulator)
    directory = args.to in DIRECTORIES
    flag, other = ("--output-dir", "--output") if directory else ("--output", "--output-dir")
    output = args.output_dir if directory else args.output
    if output is None:
        example = "DIR" if directory else "model.onnx"
        raise BitsmithError(f"export --to {args.to} needs {flag} {example}"
                            + (f" ({other} is for the other target)" if (args.output or args.output_dir) else ""))
    summary = export(settings_from_args(args), args.to, output, args.backend, args.io_type, args.verify,
                     strategy=args.strategy, synth=args.synth, simulator=args.simulator)
    # A design whose every layer is quantized must match bit for bit; anything else is a bug worth a status.
    return 1 if args.verify and summary["exact_design"] and not summary["bit_exact"] else 0


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(argv)
    except BitsmithError as e:
        print(f"bitsmith: error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("bitsmith: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
