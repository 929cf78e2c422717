"""The `magicpose` command (also `python -m magicpose`): registers the commands of `magicpose.commands`.

Each command is one module there with `add_parser(subparsers)` (its handler is `args.func(args) -> exit code`).
A `UserError` (a problem with the user's files, configs or arguments) becomes one line and exit code 1; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from magicpose.errors import UserError

DESCRIPTION = """MagicPose: animate a reference image of a person with a pose sequence (and train, convert,
evaluate). Every command reads OmegaConf YAML configs; `key=value` arguments override any config key."""

# in the order `magicpose --help` lists them; modules of magicpose.commands
COMMANDS = (
    "animate", "fit", "toy_data", "check_data", "extract_pose", "prepare_video", "convert", "fyp_sample",
    "infer_tiktok", "evaluate", "benchmark", "quickstart",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magicpose", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"magicpose.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"magicpose {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
