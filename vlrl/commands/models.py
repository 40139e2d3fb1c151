"""`vlrl models tiny` and `vlrl models random`: checkpoints built offline."""

from __future__ import annotations

import argparse
import sys

from vlrl.commands import fail


def run_tiny(args: argparse.Namespace) -> int:
    from vlrl.atomic import refuse_non_empty
    from vlrl.models.tiny import build_tiny_model

    try:
        refuse_non_empty(args.out)  # at once, not after reading the data and building the model
    except FileExistsError as e:  # OUT is written whole or not at all, never over another directory
        return fail(str(e))
    try:
        words = vocabulary_texts(args.vocab_from, args.splits, args.system_prompt, args.prompt_suffix,
                                 args.reasoning)
    except (FileNotFoundError, ValueError) as e:
        return fail(f"--vocab-from: {e}")
    print(build_tiny_model(args.out, words=words, family=args.family, seed=args.seed, min_pixels=args.min_pixels,
                           max_pixels=args.max_pixels))
    return 0


def vocabulary_texts(data: str | None, splits: list[str], system_prompt: str, prompt_suffix: str,
                     reasoning: bool = False) -> list[str]:
    """The texts whose words make a tiny model's vocabulary: those of `splits` of the dataset at `data` (splits
    it lacks are skipped; at least one must exist), else the built-in synthetic set's words."""
    from vlrl.data.schema import SchemaError, load_rows
    from vlrl.data.vocab import dataset_texts

    if not data:
        from data_pipelines.synthetic.shapes import WORDS

        return [*WORDS, system_prompt, prompt_suffix]
    found, missing = [], []
    for split in splits:
        try:
            found.append(load_rows(data, split))
        except SchemaError as e:
            if "no split" not in str(e) and "no parquet files for split" not in str(e):
                raise
            missing.append(split)
    if not found:
        raise ValueError(f"{data} has none of the splits {splits}")
    if missing:
        print(f"--vocab-from: {data} has no split {missing}; using {[s for s in splits if s not in missing]}",
              file=sys.stderr)
    return list(dataset_texts(found, system_prompt, prompt_suffix, reasoning))


def run_random(args: argparse.Namespace) -> int:
    from data_pipelines.synthetic.shapes import WORDS
    from vlrl.atomic import refuse_non_empty
    from vlrl.models.shapes import parse_overrides, resolve_shape
    from vlrl.models.tiny import build_random_model

    try:
        overrides = parse_overrides(args.set)
        resolve_shape(args.like, overrides)  # a bad --set fails here, not after the output check
    except ValueError as e:
        return fail(str(e))
    try:
        refuse_non_empty(args.out)  # at once, not after building billions of random weights
    except FileExistsError as e:
        return fail(str(e))
    try:
        print(build_random_model(args.out, like=args.like, overrides=overrides, words=WORDS, dtype=args.dtype,
                                 seed=args.seed, device=args.device))
    except ValueError as e:  # overrides that make no valid config of the family
        return fail(f"--like {args.like} {' '.join('--set ' + s for s in args.set)}: {e}")
    return 0


def add_parsers(sub) -> None:
    from vlrl.models.families import FAMILIES
    from vlrl.models.shapes import RELEASED_SHAPES, shapes_help

    models = sub.add_parser("models", help="build checkpoints offline").add_subparsers(dest="what", required=True)
    tiny = models.add_parser("tiny", help="write a tiny random Qwen VL model (HF format) for CPU demos and tests")
    tiny.add_argument("out", help="output directory")
    tiny.add_argument("--family", choices=list(FAMILIES), default="qwen2_5_vl",
                      help="model family, a transformers model_type (default qwen2_5_vl)")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--min-pixels", type=int, default=56 * 56, help="processor min_pixels (default 3136)")
    tiny.add_argument("--max-pixels", type=int, default=112 * 112, help="processor max_pixels (default 12544)")
    tiny.add_argument("--vocab-from", metavar="DATA", default=None,
                      help="schema-v1 dataset (save_to_disk directory or parquet) whose problems and answers give the "
                      "word vocabulary, as model.path=tiny does for training data (default: the built-in synthetic "
                      "set's words)")
    tiny.add_argument("--splits", nargs="+", default=["train", "test"],
                      help="splits of --vocab-from read for words (default: train test; absent ones are skipped)")
    tiny.add_argument("--system-prompt", default="", help="also add the words of this system prompt (data.system_prompt)")
    tiny.add_argument("--prompt-suffix", default="", help="also add the words of this suffix (data.prompt_suffix)")
    tiny.add_argument("--reasoning", action="store_true", help="also add the words of --vocab-from's reasoning "
                      "chains (a model to fine-tune on them with vlrl sft, e.g. its chains/ set)")
    tiny.set_defaults(fn=run_tiny)
    rand = models.add_parser("random", help="write a random-weight model with a released model's exact shape",
                             epilog=shapes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    rand.add_argument("out", help="output directory")
    rand.add_argument("--like", required=True, choices=list(RELEASED_SHAPES), metavar="NAME",
                      help="released shape to copy (listed below)")
    rand.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                      help="change one field of the shape, SECTION text or vision, FIELD a transformers config field "
                      "of the family (e.g. --set text.num_hidden_layers=2); repeatable")
    rand.add_argument("--dtype", default="bfloat16", help="parameter dtype (default bfloat16)")
    rand.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    rand.add_argument("--device", default="cpu", help="where the weights are drawn: cpu (default) or cuda (faster)")
    rand.set_defaults(fn=run_random)
