"""The command line every experiment script shares (private)."""

import argparse
import contextlib
import dataclasses
import shlex
import sys
from pathlib import Path

from jaxnn import _files, checkpoint, optim
from jaxnn.experiment._config import (
    TAKEN_ON_RESUME,
    ExperimentConfig,
)
from jaxnn.experiment._run import (
    RunResult,
    default_folder,
    run,
)
from jaxnn.experiment._searching import search_run
from jaxnn.mlp import NORMS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """The ``error:`` line first and alone (the flags are on ``--help``); exit 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser(
    defaults: ExperimentConfig, description: str = "", *, search: bool = True
) -> argparse.ArgumentParser:
    """The command line shared by every experiment script. A flag left out keeps
    the script's default (shown in --help), or the resumed or rerun run's value.
    ``search=False`` leaves ``--search`` out (a script that builds its own network)."""
    ap = _Parser(
        description=(description or f"jaxnn experiment: {defaults.name}").replace(
            "`", ""
        ),  # plain text
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags = [
        ("--epochs", int, "epochs"),
        ("--batch-size", int, "batch_size"),
        ("--learning-rate", float, "learning_rate"),
        ("--hidden", _sizes, "hidden"),
        ("--seed", int, "seed"),
        ("--checkpoint-every", int, "checkpoint_every"),
    ]
    for flag, kind, field in flags:
        ap.add_argument(flag, type=kind, help=f"default: {getattr(defaults, field)}")
    ap.add_argument("--optimizer", choices=optim.OPTIMIZERS, help=f"default: {defaults.optimizer}")
    ap.add_argument(
        "--dropout",
        type=float,
        help=f"dropout rate after each hidden layer; default: {defaults.dropout}",
    )
    ap.add_argument(
        "--norm",
        choices=NORMS,
        help=f"normalisation in each hidden layer; default: {defaults.norm}",
    )
    ap.add_argument("--out", help="run folder (default: runs/<name>-<timestamp>)")
    ap.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    ap.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its newest checkpoint; takes --epochs, "
        "--learning-rate, --batch-size and --checkpoint-every, and refuses the flags that define the run",
    )
    ap.add_argument(
        "--from-run",
        metavar="DIR",
        help="rerun DIR's config.json, with any flags applied, as a new run",
    )
    if search:
        ap.add_argument(
            "--search",
            type=int,
            metavar="N",
            help="search N configurations of the config's search_space (default: "
            f"{defaults.search_space}) with its search_schedule, ranked on the validation "
            "rows, then train the winner; writes trials.csv, search.json and search.png",
        )
    else:
        ap.set_defaults(search=None)
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


_OVERRIDES = (
    "epochs",
    "batch_size",
    "learning_rate",
    "hidden",
    "seed",
    "checkpoint_every",
    "optimizer",
    "dropout",
    "norm",
)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 4,4, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return sizes


def config_from_args(args, defaults: ExperimentConfig) -> ExperimentConfig:
    """The config a command line asks for: the given flags applied to the defaults, or
    to a saved run's ``config.json`` (``--from-run``, ``--resume``). With ``--resume``
    a flag that defines the run (``KEPT_ON_RESUME``), ``--out`` or ``--overwrite`` is an error."""
    if args.resume and args.from_run:
        raise ValueError(
            "--resume continues a run and --from-run starts a new one: give one of them"
        )
    given = {f: getattr(args, f) for f in _OVERRIDES if getattr(args, f) is not None}
    if args.resume:
        refused = [f"--{f.replace('_', '-')}" for f in given if f not in TAKEN_ON_RESUME]
        refused += [
            flag for flag, on in (("--out", args.out), ("--overwrite", args.overwrite)) if on
        ]
        if refused:
            raise ValueError(
                f"--resume continues the run in {args.resume} as it was defined; {', '.join(refused)} cannot "
                f"change (only --epochs, --learning-rate, --batch-size, --checkpoint-every can). To start a new "
                f"run from it with other settings: --from-run {args.resume} {' '.join(refused)} ..."
            )
    if args.resume or args.from_run:
        folder = Path(args.resume or args.from_run)
        try:
            text = _files.read_text(folder / "config.json", OSError, "a run's config.json")
        except OSError as e:
            raise ValueError(f"{folder} holds no run: cannot read config.json ({e})") from None
        defaults = ExperimentConfig.from_json(text)
    return dataclasses.replace(defaults, **given)


def main(
    argv: list[str] | None, defaults: ExperimentConfig, description: str = "", build=None
) -> RunResult:
    """Parses the command line, runs the experiment, prints the summary.

    Exit status: 2 with ``error: ...`` for a bad flag, config or run folder (before
    anything is written); 1 for an error while training (e.g. a full disk); 130 on
    Ctrl-C, saying where the newest checkpoint is and the command that resumes it.
    """
    ap = parser(defaults, description, search=build is None)
    args = ap.parse_args(argv)
    with exits(ap) as current:
        config = config_from_args(args, defaults)
        current.append(Path(args.resume or args.out or default_folder(config)))
        if args.search is not None:
            if args.resume:
                raise ValueError("--search starts a new run: it cannot go with --resume")
            result, found = search_run(
                config,
                current[-1],
                args.search,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
            print(f"search: {found!r}")
        else:
            result = run(
                config,
                current[-1],
                resume=bool(args.resume),
                overwrite=args.overwrite,
                progress=not args.no_progress,
                build=build,
            )
    print(summary_table(result))
    return result


def summary_table(result: RunResult) -> str:
    """The end of a run, for people: its folder and its summary, one line a figure."""
    lines = [f"run folder: {result.folder}"]
    for name, value in result.summary.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"  {name.replace('_', ' '):<22} {shown}")
    return "\n".join(lines)


@contextlib.contextmanager
def exits(ap: argparse.ArgumentParser):
    """A command line's exits around its work: 2 with ``error: ...`` for a bad flag,
    config or folder; 1 for an ``OSError`` while training; 130 on Ctrl-C, with the
    command that resumes the run folder last appended to the yielded list."""
    folders = []
    try:
        yield folders
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(interrupted_message(folders[-1]) if folders else "\ninterrupted", file=sys.stderr)
        raise SystemExit(130) from None


def interrupted_message(folder: Path) -> str:
    """What Ctrl-C prints: the newest checkpoint and the command that resumes from it."""
    try:
        newest = checkpoint.latest(folder / "checkpoints")
        epoch = checkpoint.read_metadata(newest).get("epoch")
    except checkpoint.CheckpointError:
        return (
            f"\ninterrupted before the first checkpoint in {folder}/checkpoints: nothing to resume "
            "(--checkpoint-every N saves every N epochs)"
        )
    command = shlex.join(["python", sys.argv[0], "--resume", str(folder)])
    return f"\ninterrupted. The newest checkpoint is {newest} (epoch {epoch}). Continue with:\n  {command}"
