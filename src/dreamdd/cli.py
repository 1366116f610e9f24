"""The `dreamdd` command: distill, evaluate, datasets, presets. Parsers are built by functions, never at import."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Sequence

from .errors import DreamddError, Interrupted, os_error_message
from .io.names import EVAL_TABLE
from .precision import PRECISIONS
from .protocols import PROTOCOLS
from .registry import METHODS, coreset_methods
from .tables import accuracy_text

EXIT_USER_ERROR = 2


def given(**options):
    """The options the user gave (not None): the rest keep the API's defaults, which live only there."""
    return {k: v for k, v in options.items() if v is not None}


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--seed", type=int, default=None, help="the one seed every random stream derives from")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files (default: ./data)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines on the terminal")


def add_numerics(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--precision", choices=list(PRECISIONS),
                        help=f"{what} in fp32, or under bfloat16 autocast (bf16); auto takes bf16 where the "
                             "hardware runs it natively (a CPU with AVX512-BF16 or AMX, CUDA with bf16), else fp32 "
                             "(default: fp32)")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="deterministic algorithms (torch.use_deterministic_algorithms, with exact deterministic "
                             "replacements where CUDA has none): the same seed gives identical bytes on CUDA too; "
                             "the CPU is deterministic without it")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="compile the networks' plain forwards with torch.compile (network updates, evaluation "
                             "training and testing, the selection embedding; gradient matching stays eager): "
                             "faster on long runs, results differ by float rounding; needs a C++ compiler on a CPU")


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def distill_parser(sub) -> None:
    p = sub.add_parser("distill", help="distill a dataset into a few synthetic images per class",
                       description="Distill a dataset with DREAM (representative matching in IDC's gradient "
                                   "matching); --selector random --init real is plain IDC. Writes a run folder "
                                   "with config.yaml, metrics.jsonl, summary.json, distilled.safetensors, "
                                   "metadata.json, grid.png and checkpoint.pt, locked while written; "
                                   "metadata.json and checkpoint.pt carry checksums, verified on load. Under "
                                   "`torchrun --nproc_per_node N -m dreamdd distill ...` the classes are shared out "
                                   "among N processes and rank 0 writes the run folder; a run resumes with any N.")
    p.add_argument("--dataset", help="digits, mnist, fashion-mnist, cifar10, cifar100, svhn, tiny-imagenet, "
                                     "imagenet-1k, an ImageNet subset (imagenette, imagewoof, imagenet-10, ...), a "
                                     "folder of class sub-folders, or an .npz (see `dreamdd datasets`)")
    p.add_argument("--ipc", type=int, help="stored synthetic images per class")
    p.add_argument("--preset", help="settings preset (default: <dataset>-ipc<N> or <dataset> when one exists; "
                                    "see `dreamdd presets`)")
    p.add_argument("--selector", choices=["dream", "random"], help="real batches: representative (DREAM) or random")
    p.add_argument("--method", choices=list(METHODS),
                   help="matching framework (default: the preset's, idc); mtt needs --set mtt.experts=DIR "
                        "(see `dreamdd experts`)")
    p.add_argument("--init", choices=["noise", "real", "representative"], help="synthetic initialisation")
    p.add_argument("--image-size", type=int, help="image side for datasets read from image files (shorter side "
                                                  "resized, then center-cropped; = --set data.image_size=S)")
    p.add_argument("--iterations", type=int, help="outer iterations (with --resume: the new total)")
    p.add_argument("--out", help="run folder to create (default: runs/<dataset>-ipc<N>-<method>-<selector>-s<seed>)")
    add_overrides(p, "override any setting, e.g. --set select.interval=5 --set eval.repeats=5")
    p.add_argument("--budget", metavar="DURATION",
                   help="fit the run into this wall time on this machine (e.g. 30m, 2h): measures the loop, plans "
                        "the outer iterations, and chooses the image lr among 1, 3, 10 and 30 times the preset's by "
                        "short probes scored on the validation split; the plan goes into budget.json, config.yaml "
                        "and the log; the final evaluation comes on top")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run (or extend a finished one with "
                                                       "--iterations) from its last checkpoint, with the settings "
                                                       "in its config.yaml; accepts only --iterations, --device, "
                                                       "--no-eval, --tensorboard and --quiet")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation (a resumed run remembers it)")
    p.add_argument("--tensorboard", action="store_true", help="also log metrics to RUN_DIR/tensorboard "
                                                                "(needs the tensorboard package)")
    add_numerics(p, "the networks' forwards and backwards (matching, network updates, evaluation) run")
    add_common(p)


def evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="train fresh networks on a distilled set and report test accuracy",
                       description="Evaluate a distilled set: fresh networks trained on it under a named "
                                   "protocol (--protocol); reports the test accuracy at the checkpoint chosen on "
                                   "the validation split and after the last epoch, never choosing on test. "
                                   "PATH is a dreamdd run folder or artifact, a .pt or .npz of images and "
                                   "labels (loaded without running code), or a folder of class sub-folders. Under "
                                   "torchrun the networks are shared out among the processes (same results).")
    p.add_argument("path", nargs="?", help="the distilled set (omit with --whole-dataset)")
    p.add_argument("--model", help="evaluation network (default: the one the set was distilled with)")
    p.add_argument("--models", help="comma-separated networks, e.g. convnet3,resnet10_bn,densenet121: "
                                    "prints a table and writes it as markdown, CSV and JSON")
    p.add_argument("--protocol", choices=list(PROTOCOLS),
                   help="a framework's published evaluation protocol (default: the one the set was distilled "
                        "with): idc (1000 epochs, batch 64, DSA flip+color+one of crop/scale/rotate, CutMix, "
                        "x0.2 at 2/3 and 5/6), dc (300 epochs, batch 256, no augmentation, x0.1 at half), dsa and "
                        "dm (1000 epochs, batch 256, one DSA op per batch, x0.1 at half), mtt (as dsa, with the "
                        "set's learned lr); every setting is recorded with the result")
    p.add_argument("--repeats", type=int, help="fresh networks per model (mean and std)")
    p.add_argument("--epochs", type=int, help="training epochs per network")
    p.add_argument("--workers", type=int, help="train the repeats in this many processes (CPU; default 1)")
    p.add_argument("--dataset", help="the dataset whose splits evaluate the set (needed for non-dreamdd sets)")
    p.add_argument("--mean", help="comma-separated mean the stored images were normalized with (non-dreamdd)")
    p.add_argument("--std", help="comma-separated std the stored images were normalized with (non-dreamdd)")
    p.add_argument("--factor", type=int, help="multi-formation factor of the stored images (non-dreamdd)")
    p.add_argument("--whole-dataset", metavar="NAME", help="evaluate the whole training set of NAME instead "
                                                           "(the upper bound), with the same recipe")
    p.add_argument("--table", metavar="PREFIX", help="where to write the table (default: PATH/eval_table or "
                                                     "./eval_table)")
    add_overrides(p, "override the recipe, e.g. --set eval.patience=4 --set eval.lr=0.02")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_numerics(p, "the networks train and validate (test accuracy is measured in fp32)")
    add_common(p)


def select_parser(sub) -> None:
    p = sub.add_parser("select", help="coreset baseline: real images per class chosen by a selection method",
                       description="Choose N real images per class (random, herding, k-center greedy, or DREAM's "
                                   "representative k-means selection) in the embedding of a network trained "
                                   "briefly on the real data; write them as an artifact, as distill does, and "
                                   "evaluate them with the dataset's recipe.")
    p.add_argument("--dataset")
    p.add_argument("--per-class", type=int, help="images per class")
    p.add_argument("--method", choices=coreset_methods(),
                   help="selection method (default random)")
    p.add_argument("--feature-epochs", type=int, help="epochs of the feature network (default 2)")
    p.add_argument("--resume", metavar="RUN_DIR", help="finish a stopped select run (accepts only --device and "
                                                       "--quiet)")
    p.add_argument("--out", help="folder to create (default: runs/<dataset>-coreset-<method>-<N>-s<seed>)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation")
    add_overrides(p, "override settings (model.*, eval.*), e.g. --set eval.repeats=5")
    add_numerics(p, "the feature network and the evaluation train")
    add_common(p)


def experts_parser(sub) -> None:
    p = sub.add_parser("experts", help="train MTT expert trajectories on the real training split",
                       description="Train expert networks (SGD with mtt.lr_teacher, DSA, no CutMix) and store their "
                                   "parameters after every epoch as safetensors plus experts.json; distill with "
                                   "--method mtt --set mtt.experts=DIR and the same model settings.")
    p.add_argument("--dataset", help="dataset name or path (as for distill)")
    p.add_argument("--out", help="folder to write (must be new or empty)")
    p.add_argument("--experts", type=int, help="expert networks to train (default 5)")
    p.add_argument("--epochs", type=int, help="epochs per expert (default 50, as MTT's buffer.py; fewer narrow "
                                              "the start epochs a student can draw)")
    p.add_argument("--resume", metavar="DIR", help="finish a stopped training in DIR, keeping the experts already "
                                                   "written (accepts only --device and --quiet)")
    p.add_argument("--preset", help="settings preset for the model and mtt.* (default: the dataset's)")
    add_overrides(p, "override a setting, e.g. --set mtt.zca=true --set model.width=64")
    add_common(p)


def run_experts(args) -> int:
    from .config import parse_overrides
    from .experts import experts
    out = experts(args.dataset, args.out, experts=args.experts, epochs=args.epochs, preset=args.preset,
                  overrides=parse_overrides(args.overrides), seed=args.seed, device=args.device,
                  data_root=args.data_root, resume=args.resume, quiet=args.quiet)
    print(f"experts: {out} (experts.json and one expert_NNN.safetensors per expert)")
    return 0


def report_parser(sub) -> None:
    p = sub.add_parser("report", help="write report.html for one or more run folders",
                       description="Write a self-contained report.html (images embedded) for one or more run "
                                   "folders: overview, validation accuracy against outer iteration, matching "
                                   "loss, synthetic-image grids, evaluation tables, timings and configuration; "
                                   "the plots are also written as PNGs beside it (<name>-accuracy.png, "
                                   "<name>-loss.png).")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (distill's or select's)")
    p.add_argument("--out", metavar="FILE", help="the page to write (default: RUN_DIR/report.html for one run, "
                                                 "./report.html for several)")


def compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="overlay two runs' accuracy curves; iterations to reach the other's "
                                       "final accuracy",
                       description="Overlay two runs' accuracy curves (periodic validation plus the final "
                                   "evaluation) and print each run's final accuracy, the first outer iteration "
                                   "at which it reaches the other's final accuracy (or 'never') and the ratio "
                                   "of the other's iterations to it (> 1: fewer iterations). A run's final "
                                   "accuracy is its final evaluation's, else its last periodic one.")
    p.add_argument("run_a", metavar="RUN_A", help="a run folder")
    p.add_argument("run_b", metavar="RUN_B", help="another run folder (e.g. the baseline)")
    p.add_argument("--out", metavar="PNG", default="compare.png", help="the plot to write (default: ./compare.png)")
    p.add_argument("--metric",
                   help="accuracy key of the eval events in metrics.jsonl (default: val_mean, validation; "
                        "test_mean exists only in the final evaluation)")


def run_report(args) -> int:
    from .report import write_report
    page, plots = write_report(args.runs, args.out)
    print(f"report: {page} (plots: {', '.join(str(p) for p in plots)})")
    return 0


def run_compare(args) -> int:
    from .report import compare_runs
    comparison = compare_runs(args.run_a, args.run_b, plot=args.out, **given(metric=args.metric))
    print("\n".join(comparison.lines()))
    print(f"plot: {comparison.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="dreamdd", description="Dataset distillation with representative "
                                                                 "matching (DREAM).")
    parser.add_argument("--version", action="version", version=f"dreamdd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    distill_parser(sub)
    experts_parser(sub)
    evaluate_parser(sub)
    select_parser(sub)
    report_parser(sub)
    compare_parser(sub)
    p = sub.add_parser("datasets", help="list the known datasets and whether their files are present",
                       description="List the known datasets; with --check NAME, verify one: its layout, images "
                                   "per class and split, missing, duplicate or unknown classes, class order "
                                   "against the pinned lists and (unless --no-decode) that every image decodes. "
                                   "Exit status 2 when something is wrong.")
    p.add_argument("--data-root", help="folder searched for dataset files (default: ./data)")
    p.add_argument("--check", metavar="NAME", help="check one dataset and say what is wrong and how to fix it")
    p.add_argument("--no-decode", action="store_true", help="with --check: skip decoding every image")
    p.add_argument("--workers", type=int, help="with --check: decoding processes (default: all CPUs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare_parser(sub)
    plan_parser(sub)
    sub.add_parser("presets", help="list the settings presets")
    return parser


def run_distill(args) -> int:
    from .api import distill
    from .distributed import current_world
    from .config import parse_overrides
    if args.resume is None and (args.dataset is None or (args.ipc is None and args.preset is None)):
        raise DreamddError("distill needs --dataset and --ipc (or a --preset), or --resume RUN_DIR")
    result = distill(args.dataset, args.ipc, preset=args.preset, selector=args.selector, init=args.init,
                     method=args.method, image_size=args.image_size,
                     iterations=args.iterations, out=args.out, overrides=parse_overrides(args.overrides),
                     seed=args.seed, device=args.device, precision=args.precision,
                     deterministic=args.deterministic, compile=args.compile, data_root=args.data_root,
                     resume=args.resume,
                     evaluate=False if args.no_eval else None, tensorboard=args.tensorboard, budget=args.budget,
                     quiet=args.quiet)
    if not current_world().is_main:    # under torchrun rank 0 alone speaks
        return 0
    evaluation = result.summary.get("evaluation")
    if evaluation:
        print(accuracy_text(evaluation))
    print(f"results: {result.path} (distilled.safetensors, grid.png, summary.json, metrics.jsonl)")
    return 0


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise DreamddError(f"{text!r} is not a comma-separated list of numbers, e.g. 0.4914,0.4822,0.4465") from None


def run_evaluate(args) -> int:
    from pathlib import Path

    from .api import evaluate_models, evaluate_whole_dataset
    from .distributed import current_world
    from .config import parse_overrides
    from .tables import markdown, write_tables
    common = dict(repeats=args.repeats, epochs=args.epochs, data_root=args.data_root, protocol=args.protocol,
                  overrides=parse_overrides(args.overrides), quiet=args.quiet,
                  **given(device=args.device, seed=args.seed, workers=args.workers, precision=args.precision,
                          deterministic=args.deterministic, compile=args.compile))
    models = args.models.split(",") if args.models else [args.model]
    if args.whole_dataset:
        results = [evaluate_whole_dataset(args.whole_dataset, model=m, **common) for m in models]
        title = f"{args.whole_dataset}: whole training set"
    elif args.path is None:
        raise DreamddError("evaluate needs PATH (a distilled set) or --whole-dataset NAME")
    else:
        results = evaluate_models(args.path, models, dataset=args.dataset, mean=_floats(args.mean),
                                  std=_floats(args.std), factor=args.factor, **common)
        title = f"{args.path}"
    if not current_world().is_main:    # under torchrun rank 0 alone prints and writes the table
        return 0
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    elif len(results) == 1:
        print(accuracy_text(results[0]))
    else:
        print(markdown(results, title))
    if args.models:
        source = Path(args.path) if args.path else None
        default = (source if source and source.is_dir() else Path(".")) / EVAL_TABLE
        paths = write_tables(args.table or default, results, title)
        print("table: " + ", ".join(str(p) for p in paths))
    return 0


def run_select(args) -> int:
    from .api import select
    from .config import parse_overrides
    result = select(args.dataset, args.per_class, args.method, out=args.out, feature_epochs=args.feature_epochs,
                    seed=args.seed, data_root=args.data_root, device=args.device, precision=args.precision,
                    deterministic=args.deterministic, compile=args.compile,
                    evaluate=False if args.no_eval else None, overrides=parse_overrides(args.overrides),
                    resume=args.resume, quiet=args.quiet)
    evaluation = result.summary.get("evaluation")
    if evaluation:
        print(accuracy_text(evaluation))
    print(f"results: {result.path}")
    return 0


def prepare_parser(sub) -> None:
    p = sub.add_parser("prepare", help="decode an image-layout dataset once into a memory-light store",
                       description="Decode TinyImageNet, ImageNet-1K or an ImageNet subset once into "
                                   "<data-root>/prepared/<name>-<S>x<S>/: class-sorted uint8 files and index.json "
                                   "(classes, counts, offsets, source checksum). One class at a time over worker "
                                   "processes; an interrupted run resumes. Later runs read it (distill prepares it "
                                   "itself when missing).")
    p.add_argument("dataset", metavar="DATASET", help="tiny-imagenet, imagenet-1k, imagenette, imagewoof, "
                                                      "imagefruit, imageyellow, imagemeow, imagesquawk, "
                                                      "imagenet-10, imagenet-100")
    p.add_argument("--data-root", help="folder holding the dataset (default: ./data)")
    p.add_argument("--image-size", type=int, help="image side (default: the dataset's, e.g. 64 for tiny-imagenet)")
    p.add_argument("--workers", type=int, help="decoding processes (default: all CPUs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def plan_parser(sub) -> None:
    p = sub.add_parser("plan", help="memory and time of a run before starting it",
                       description="Estimate a run's memory (data, synthetic set with its gradient and momentum, "
                                   "networks, activations of a matching step, evaluation) and compute (one inner "
                                   "iteration, the distillation, the evaluation), calibrated from a few timed "
                                   "forward+backward steps of its network on this machine. Settings resolve as "
                                   "for distill.")
    p.add_argument("--dataset", required=True, help="as for distill")
    p.add_argument("--ipc", type=int, help="stored synthetic images per class")
    p.add_argument("--preset", help="settings preset (default as for distill)")
    p.add_argument("--image-size", type=int, help="image side for datasets read from image files")
    add_overrides(p, "override any setting, as for distill")
    p.add_argument("--device", default=None, help="device to calibrate on (default: auto)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files (default: ./data)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def run_plan(args) -> int:
    from .config import deep_update, parse_overrides, resolve
    from .planner import plan
    named: dict = {}
    if args.image_size is not None or args.data_root is not None:
        named["data"] = {k: v for k, v in (("image_size", args.image_size), ("root", args.data_root))
                         if v is not None}
    if args.device is not None:
        named["device"] = args.device
    config = resolve(args.dataset, args.ipc, args.preset, deep_update(named, parse_overrides(args.overrides)))
    result = plan(config)
    print(json.dumps(result.as_dict(), indent=2) if args.json else "\n".join(result.lines()))
    return 0


def run_prepare(args) -> int:
    import time

    from .data import prepare
    started = time.time()
    store = prepare(args.dataset, image_size=args.image_size, workers=args.workers, quiet=args.quiet,
                    **given(root=args.data_root))
    counts = {s: sum(store.index["splits"][s]["counts"]) for s in ("train", "test")}
    print(f"prepared: {store.path} ({len(store.index['class_ids'])} classes, {counts['train']} train / "
          f"{counts['test']} test images at {store.image_size[0]}x{store.image_size[1]}, "
          f"{time.time() - started:.1f} s)")
    return 0


def run_datasets(args) -> int:
    from .data import list_datasets
    if args.check:
        from .data.check import check
        report = check(args.check, workers=args.workers, quiet=args.quiet, decode_all=not args.no_decode,
                       **given(root=args.data_root))
        print(report.text())
        if not report.ok:
            raise DreamddError(f"{report.name} has {len(report.problems)} problem(s), listed above with their fixes")
        return 0
    rows = list_datasets(**given(root=args.data_root))
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "present" if r["present"] else "missing"
        print(f"{r['name']:<{width}}  {state:<7}  {r['path']}  {r['description']}")
    return 0


def run_presets(args) -> int:
    from .config import list_presets
    presets = list_presets()
    width = max(len(n) for n in presets)
    for name, about in presets.items():
        print(f"{name:<{width}}  {about}")
    return 0


COMMANDS = {"distill": run_distill, "evaluate": run_evaluate, "select": run_select, "datasets": run_datasets, "presets": run_presets}
COMMANDS["experts"] = run_experts
COMMANDS["report"] = run_report
COMMANDS["compare"] = run_compare
COMMANDS["prepare"] = run_prepare
COMMANDS["plan"] = run_plan


def _terminate(signal_number, frame) -> None:
    """SIGTERM as Ctrl-C: the run stops where it is (every write is atomic) and says how to continue."""
    raise Interrupted("terminated", signal_number)


TORCHRUN_COMMANDS = ("distill", "evaluate")     # the commands that share their work among torchrun's processes


def _torchrun_rank() -> tuple[int, int]:
    """(world size, rank) under torchrun, (1, 0) without it: read from the environment, before torch is imported."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        return (size, int(os.environ.get("RANK", "0"))) if size > 1 else (1, 0)
    except ValueError:
        return 1, 0     # distributed.current_world says what is wrong, for the commands that use it


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    size, rank = _torchrun_rank()
    try:
        if size > 1 and args.command not in TORCHRUN_COMMANDS:
            raise DreamddError(f"dreamdd {args.command} runs in one process; only {' and '.join(TORCHRUN_COMMANDS)} "
                               "share their work under torchrun: run it without torchrun")
        status = COMMANDS[args.command](args)
        if size > 1 and status == 0:
            from .distributed import finish
            if finish() and rank != 0:
                # a rank other than 0 wrote nothing and has said all it says: it ends here rather than through
                # the interpreter's teardown, where gloo's threads have aborted such a process now and then
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)
        return status
    except DreamddError as error:
        if getattr(error, "said_by_rank_0", False):
            # rank 0 says it and ends with status 2; ending here with 2 as well would let torchrun stop rank 0
            # before it has said it
            return 0
        print(f"dreamdd: error{f' (rank {rank})' if rank else ''}: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:   # a full disk, a read-only folder, a file where a folder should be
        print(f"dreamdd: error: {os_error_message(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as error:
        message = str(error) if isinstance(error, Interrupted) else "interrupted"
        if "--resume" not in message and args.command in ("distill", "select", "experts"):
            message += f"; a {args.command} run continues with dreamdd {args.command} --resume RUN_DIR"
        elif args.command == "prepare":
            message += "; run the same `dreamdd prepare` again to continue where it stopped"
        print(f"dreamdd: {message}", file=sys.stderr)
        return 128 + getattr(error, "signal_number", 2)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
