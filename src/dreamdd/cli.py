"""The `dreamdd` command: distill, evaluate, datasets, presets. Parsers are built by functions, never at import."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import DreamddError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--seed", type=int, default=None, help="the one seed every random stream derives from")
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files (default: ./data)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines on the terminal")


def distill_parser(sub) -> None:
    p = sub.add_parser("distill", help="distill a dataset into a few synthetic images per class",
                       description="Distill a dataset with DREAM (representative matching in IDC's gradient "
                                   "matching); --selector random --init real is plain IDC. Writes a run folder "
                                   "with config.yaml, metrics.jsonl, summary.json, distilled.safetensors, "
                                   "metadata.json, grid.png and checkpoint.pt.")
    p.add_argument("--dataset", help="digits, mnist, fashion-mnist, cifar10, cifar100, svhn, a folder of class "
                                     "sub-folders, or an .npz (see `dreamdd datasets`)")
    p.add_argument("--ipc", type=int, help="stored synthetic images per class")
    p.add_argument("--preset", help="settings preset (default: <dataset>-ipc<N> or <dataset> when one exists; "
                                    "see `dreamdd presets`)")
    p.add_argument("--selector", choices=["dream", "random"], help="real batches: representative (DREAM) or random")
    p.add_argument("--init", choices=["noise", "real", "representative"], help="synthetic initialisation")
    p.add_argument("--iterations", type=int, help="outer iterations (with --resume: the new total)")
    p.add_argument("--out", help="run folder to create (default: runs/<dataset>-ipc<N>-<method>-<selector>-s<seed>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set select.interval=5 --set eval.repeats=5")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    add_common(p)


def evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="train fresh networks on a distilled set and report test accuracy",
                       description="Evaluate a distilled set: fresh networks trained on it with DSA and CutMix, "
                                   "the checkpoint chosen on the validation split, the test split used once.")
    p.add_argument("path", help="a run folder or its distilled.safetensors")
    p.add_argument("--model", help="evaluation network (default: the one the set was distilled with)")
    p.add_argument("--repeats", type=int, help="fresh networks to train (mean and std)")
    p.add_argument("--epochs", type=int, help="training epochs per network")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_common(p)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="dreamdd", description="Dataset distillation with representative "
                                                                 "matching (DREAM).")
    parser.add_argument("--version", action="version", version=f"dreamdd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    distill_parser(sub)
    evaluate_parser(sub)
    p = sub.add_parser("datasets", help="list the known datasets and whether their files are present")
    p.add_argument("--data-root", default="data", help="folder searched for dataset files (default: ./data)")
    sub.add_parser("presets", help="list the settings presets")
    return parser


def run_distill(args) -> int:
    from .api import distill
    from .config import parse_overrides
    if args.resume is None and (args.dataset is None or (args.ipc is None and args.preset is None)):
        raise DreamddError("distill needs --dataset and --ipc (or a --preset), or --resume RUN_DIR")
    result = distill(args.dataset, args.ipc, preset=args.preset, selector=args.selector, init=args.init,
                     iterations=args.iterations, out=args.out, overrides=parse_overrides(args.overrides),
                     seed=args.seed, device=args.device, data_root=args.data_root, resume=args.resume,
                     evaluate=not args.no_eval, quiet=args.quiet)
    evaluation = result.summary.get("evaluation")
    if evaluation:
        print(f"test accuracy {evaluation['test_mean']:.2f} +- {evaluation['test_std']:.2f} "
              f"({evaluation['repeats']} x {evaluation['model']}, {evaluation['epochs']} epochs)")
    print(f"results: {result.path} (distilled.safetensors, grid.png, summary.json, metrics.jsonl)")
    return 0


def run_evaluate(args) -> int:
    from .api import evaluate
    result = evaluate(args.path, model=args.model, repeats=args.repeats, epochs=args.epochs,
                      data_root=args.data_root, device=args.device or "auto",
                      seed=0 if args.seed is None else args.seed, quiet=args.quiet)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['model']}: test accuracy {result['test_mean']:.2f} +- {result['test_std']:.2f} over "
              f"{result['repeats']} networks, {result['epochs']} epochs (validation {result['val_mean']:.2f}, "
              f"{result['val_size']} images)")
    return 0


def run_datasets(args) -> int:
    from .data import list_datasets
    rows = list_datasets(args.data_root)
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


COMMANDS = {"distill": run_distill, "evaluate": run_evaluate, "datasets": run_datasets, "presets": run_presets}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except DreamddError as error:
        print(f"dreamdd: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("dreamdd: interrupted; a distill run continues with --resume RUN_DIR", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
