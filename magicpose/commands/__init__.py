"""The `magicpose` commands, one module each: `add_parser(subparsers)` declares the arguments and sets
`func=run`; `run(args) -> int` does the work. argparse lives here and in `magicpose.cli` only; heavy libraries load
inside `run`, so `magicpose --help` stays fast (and `extract-pose` runs in the torch-free `.venv-pose`).

`outputs.py` holds what the generating commands share."""
