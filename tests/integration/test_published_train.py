"""The RL set built from published layouts trains unchanged: RefCOCO in the refer layout (refs pickle +
instances.json), VLM-R1's REC JSONL through `folder`, and Orsta detection parquet, one `vlrl data build`,
then `vlrl train data.path=… model.path=tiny trainer.total_steps=2`."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys

import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipelines.build import build
from data_pipelines.card import check_totals
from data_pipelines.config import BuildConfig, CurateConfig


def _image(path, size, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.new("RGB", size, colour).save(path)


def _png(size, colour) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _sources(tmp_path) -> list[dict]:
    coco = tmp_path / "train2014"
    for i in range(1, 5):
        _image(coco / f"COCO_train2014_{i:012d}.jpg", (96, 64), (40 * i, 90, 30))
    instances = {"images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": 96, "height": 64}
                            for i in range(1, 5)],
                 "annotations": [{"id": 100 + i, "image_id": i, "category_id": 1, "bbox": [4 * i, 5, 30, 20]}
                                 for i in range(1, 5)],
                 "categories": [{"id": 1, "name": "cup"}]}
    (tmp_path / "refcoco").mkdir()
    (tmp_path / "refcoco" / "instances.json").write_text(json.dumps(instances))
    refs = [{"ref_id": i, "ann_id": 100 + i, "image_id": i, "category_id": 1, "split": "train" if i < 4 else "testA",
             "sentences": [{"sent": "the cup", "raw": "The cup", "sent_id": i, "tokens": ["the", "cup"]}]}
            for i in range(1, 5)]
    (tmp_path / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    rec = tmp_path / "rec.jsonl"
    rec.write_text("\n".join(json.dumps({"id": i, "image": f"COCO_train2014_{i:012d}.jpg", "conversations": [
        {"from": "human", "value": "<image>Find the cup."}, {"from": "gpt", "value": f"[{i}, 2, 40, 30]"}]})
        for i in range(1, 4)) + "\n")
    truth = "<answer>[{'bbox_2d': [100, 100, 500, 600], 'label': 'cup'}]</answer>"
    reward = {"ground_truth": truth, "verifier": "detection", "accuracy_ratio": 1.0, "format_ratio": 0.1,
              "verifier_parm": {"det_verifier_normalized": True, "det_reward_ratio": {"iou_max_label_first": 1.0}}}
    pq.write_table(pa.Table.from_pylist([
        {"prompt": [{"role": "user", "content": "<image>Find the cup."}], "reward_model": reward,
         "images": [{"bytes": _png((80, 60), (i * 50, 0, 0)), "path": None}], "data_source": "orsta_det"}
        for i in range(3)]), tmp_path / "orsta.parquet")
    return [
        {"kind": "refcoco", "params": {"annotations": str(tmp_path / "refcoco" / "refs(unc).p"),
                                       "image_root": str(coco)}},
        {"kind": "folder", "name": "vlmr1", "params": {
            "annotations": str(rec), "image_root": str(coco), "task": "grounding",
            "columns": {"id": "id", "image": "image", "problem": "conversations[0].value",
                        "answer": "conversations[1].value"}}},
        {"kind": "orsta", "params": {"path": str(tmp_path / "orsta.parquet")}},
    ]


def test_published_layouts_build_and_train(tmp_path):
    out = tmp_path / "d"
    card = build(BuildConfig(output_dir=str(out), sources=_sources(tmp_path), curate=CurateConfig(dedupe="none")))
    assert check_totals(card) == []
    assert card["stages"][0]["rows_out"] == 4 + 3 + 3 and card["dropped"] == 0
    assert card["outputs"]["rl_test"]["rows"] >= 1  # at least the testA ref
    run = subprocess.run(
        [sys.executable, "-m", "vlrl.cli", "train", f"data.path={out / 'rl'}", "model.path=tiny",
         f"trainer.output_dir={tmp_path / 'run'}", "trainer.total_steps=2", "trainer.eval_every=2",
         "data.prompts_per_step=4", "rollout.group_size=2", "model.max_pixels=12544", "reward.workers=0"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss/loss" in m] == [1, 2]
