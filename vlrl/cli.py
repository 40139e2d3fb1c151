"""`vlrl` command line: train, sft, eval, report, export, rewards, models, data, serve (vlrl/commands/)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from vlrl.commands import data, models, results, rewards, serve, train

    parser = argparse.ArgumentParser(prog="vlrl", description="RL from verifiable rewards for vision-language models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (train, results, rewards, models, data, serve):  # the order `vlrl --help` lists them in
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # argparse stops filling a positional list once an option follows it, so `key=value` overrides written
    # after options (`vlrl rewards score IN -o OUT workers=0`) come back unrecognised: they are overrides too.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
