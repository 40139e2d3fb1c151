"""`vlrl data synth`, `vlrl data build`, `vlrl data sources`: datasets."""

from __future__ import annotations

import argparse

from vlrl.commands import fail

DATA_BUILD_HELP = """\
Build an RL dataset and a reasoning-chain dataset from images, in six stages:
  1 collect  read the sources (image folders, HF datasets, COCO, RefCOCO, VLAA-Thinking, Orsta,
             synthetic shapes and digits) into schema-v1 rows; malformed rows are dropped and counted
  2 caption  a teacher VLM describes each image (setting, objects, verbatim text)
  3 distill  a teacher reasoner answers from caption + question, with <think>/<answer> tags
  4 rewrite  chains are rewritten to speak of the image, not of the caption
  5 verify   chains whose answer the training verifier rejects are dropped
  6 curate   dedupe, rule filters, visual-token budget, split into rl/ and chains/
Teacher replies are cached in OUTPUT_DIR/teacher_cache.sqlite: rerunning after a crash or a kill sends only
the requests that have no reply yet. OUTPUT_DIR/README.md and card.json count rows in and out per stage and
source, and every dropped row with its reason is in OUTPUT_DIR/drops.jsonl.
Example, with a local model as the teacher:
  vlrl serve /models/Qwen2.5-VL-7B-Instruct --port 8000 &
  vlrl data build configs/data/shapes_digits.yaml teacher.kind=openai teacher.model=Qwen2.5-VL-7B-Instruct
"""


def run_synth(args: argparse.Namespace) -> int:
    from data_pipelines.synthetic.shapes import build_shapes_dataset

    try:
        ds = build_shapes_dataset(args.out, args.train_rows, args.eval_rows, seed=args.seed,
                                  image_size=args.image_size, tasks=tuple(args.tasks))
    except FileExistsError as e:
        return fail(str(e))
    print(f"{args.out}: " + ", ".join(f"{k}={len(v)} rows" for k, v in ds.items()))
    return 0


def run_build(args: argparse.Namespace) -> int:
    import logging

    from data_pipelines.build import build
    from data_pipelines.config import BuildConfig
    from data_pipelines.sources.annotations import SourceError
    from vlrl.config_loader import ConfigError, load_config

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = list(args.overrides)
    yaml_path = None
    if overrides and "=" not in overrides[0]:
        yaml_path = overrides.pop(0)
    try:
        cfg = load_config(BuildConfig, yaml_path, overrides)
        card = build(cfg, config_name=yaml_path or "")
    except (ConfigError, SourceError) as e:
        return fail(str(e))
    out = cfg.output_dir
    for s in card["stages"]:
        print(f"{s['stage']:>9}: {s['rows_in']:>6} in -> {s['rows_out']:>6} out"
              + (f"  dropped {s['drops']}" if s["drops"] else ""))
    rl, chains = card["outputs"]["rl_train"]["rows"], card["outputs"]["chains"]["rows"]
    if not card["teachers"]:
        print("RL-only build: no teacher configured (teacher.kind=none), so no caption/distill/rewrite/verify stage")
    print(f"RL set: {out}/rl ({rl} train, {card['outputs']['rl_test']['rows']} test); reasoning chains: "
          f"{out}/chains ({chains}); card: {out}/README.md; {card['dropped']} dropped rows in {out}/drops.jsonl")
    print(f"train on it: vlrl train data.path={out}/rl model.path=tiny (a tiny model with this set's words) or "
          "model.path=CHECKPOINT")
    return 0


def run_sources(args: argparse.Namespace) -> int:
    import inspect

    from data_pipelines.sources.params import describe, format_params
    from data_pipelines.sources.registry import SOURCES

    print("A source section is {kind, name, params}; each kind's params (from its options dataclass):")
    for kind, source in SOURCES.items():
        doc = inspect.getdoc(source.load) or ""
        print(f"\n{kind}: {doc.splitlines()[0] if doc else ''}")
        print("\n".join(format_params(describe(source.options))))
    return 0


def add_parsers(sub) -> None:
    from data_pipelines.config import BuildConfig
    from vlrl.config_loader import format_help

    data = sub.add_parser("data", help="build datasets").add_subparsers(dest="what", required=True)
    synth = data.add_parser("synth", help="write the synthetic shapes dataset (colour, count) with a held-out split")
    synth.add_argument("out", help="output directory (datasets.save_to_disk format)")
    synth.add_argument("--train-rows", type=int, default=4000, help="training rows per task (default 4000)")
    synth.add_argument("--eval-rows", type=int, default=128, help="held-out rows per task (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    synth.add_argument("--image-size", type=int, default=56, help="image side in pixels (default 56)")
    synth.add_argument("--tasks", nargs="+", default=["colour", "count"], help="tasks to include")
    synth.set_defaults(fn=run_synth)
    build = data.add_parser("build", help="run the dataset pipeline: collect, caption, distill, rewrite, verify, "
                            "curate", description=DATA_BUILD_HELP, epilog=format_help(BuildConfig),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] key=value",
                       help="an optional build recipe (default: built-in defaults, a small shapes set with the "
                       "programmatic teacher), then dotted overrides")
    build.set_defaults(fn=run_build)
    sources = data.add_parser("sources", help="list the source kinds of `vlrl data build` and their params")
    sources.set_defaults(fn=run_sources)
