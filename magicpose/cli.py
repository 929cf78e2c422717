"""The `magicpose` command (also `python -m magicpose`): registers the commands of `magicpose.commands`.

Each command is one module there with `add_parser(subparsers)` (its handler is `args.func(args) -> exit code`).
A `UserError` (a problem with the user's files, configs or arguments) becomes one line and exit code 1; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from magicpose.errors import UserError

DESCRIPTION = """MagicPose: animate a reference image of a person with a pose sequence (and train, convert,
evaluate). Every command reads OmegaConf YAML configs; `key=value` arguments override any config key."""

# in the order `magicpose --help` lists them; modules of magicpose.commands
COMMANDS = (
    "animate", "fit", "toy_data", "check_data", "extract_pose", "retarget_pose", "prepare_video", "convert",
    "fyp_sample", "infer_tiktok", "evaluate", "benchmark", "quickstart", "demo",
)  # fmt: skip


def _original_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """What the original projects' flags in `argv` (`--control_mode`, `--skeleton_path`) are here: checked before
    argparse, whose own error would only say that a required flag of ours is missing."""
    from magicpose.original_names import original_name_hint

    known = set(parser._option_string_actions)
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for command in action.choices.values():
            known |= set(command._option_string_actions)
    flags = [token.split("=", 1)[0] for token in argv if token.startswith("--")]
    return [hint for hint in map(original_name_hint, flags) if hint and hint.split("'")[1] not in known]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magicpose", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"magicpose.commands.{name}").add_parser(sub)
    return parser


def _no_torchvision_notice(record: logging.LogRecord) -> bool:
    """transformers says on every run that CLIP's image processor falls back to PIL without torchvision; nothing here
    uses that processor, and two such lines before a one-line error bury it."""
    return "requires torchvision" not in record.getMessage()


def _quiet_known_noise() -> None:
    logger = logging.getLogger("transformers.utils.import_utils")
    if _no_torchvision_notice not in logger.filters:  # main() runs many times in one process (tests)
        logger.addFilter(_no_torchvision_notice)


def main(argv: list[str] | None = None) -> int:
    _quiet_known_noise()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    originals = _original_flags(parser, argv)
    if originals:
        parser.error("; ".join(originals))
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
