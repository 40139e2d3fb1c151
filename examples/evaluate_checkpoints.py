"""Evaluate two checkpoints on the same held-out split and compare them in one table.

    python examples/evaluate_checkpoints.py runs/api_custom_reward/checkpoints/step_000030 runs/api_custom_reward
    python examples/evaluate_checkpoints.py RUN_A RUN_B --k 4        # also pass@4 and mean@4 (sampled)

A MODEL is a run directory (its final model), one of its checkpoints, or any model directory. Each is
decoded greedily (and with --k > 1, sampled k times per row) with the rollout and rewards the run trained
with, on the run's own held-out split unless --data names a dataset. Here every model is scored by the built-in
`accuracy` verifier alone (reward.terms), so runs trained with rewards of their own compare on the same footing:
the same as `vlrl eval A B 'reward.terms=[{name: accuracy}]'`.
"""

import argparse

import vlrl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs=2, metavar="MODEL")
    parser.add_argument("--data", help="schema-v1 dataset (default: the first run's own)")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--out", default="runs/eval/compare")
    args = parser.parse_args()

    overrides = {"eval.k": args.k, "reward.terms": [{"name": "accuracy"}]}
    result = vlrl.evaluate(args.models, data=args.data, overrides=overrides, out=args.out, overwrite=True)
    print(result.table)
    # each summary: the model's metrics overall and per data source (what OUT/summary.json holds)
    best = max(result.summaries, key=lambda s: s["overall"]["accuracy"])
    print(f"best: {best['label']} (accuracy {best['overall']['accuracy']:.3f}); details in {result.out}")


if __name__ == "__main__":
    main()
