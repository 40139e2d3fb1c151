"""vlrl report: the page holds a plot per curve with every run drawn, and the samples' own images."""

import base64
import io
import json
import re
import sys

import pytest
from PIL import Image

from vlrl.cli import main
from vlrl.report import ReportError, write_report

BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's C0 and C1: first and second run


def make_run(path, reward_scale=1.0, steps=40, sample_colour=(255, 0, 255)):
    """A run directory as `vlrl train` leaves it: metrics of two sources, evaluations, one sample step."""
    path.mkdir(parents=True)
    lines = [{"step": 0, "eval/accuracy": 0.0, "eval/accuracy/colour": 0.0, "eval/accuracy/count": 0.0}]
    for s in range(1, steps + 1):
        r = reward_scale * s / steps
        lines.append({"step": s, "reward/mean": r, "reward/accuracy": r / 2, "reward/colour/mean": r,
                      "reward/colour/accuracy": r / 2, "reward/colour/format": 1.0, "reward/count/mean": r / 3,
                      "reward/count/accuracy": r / 4, "rollout/length_mean": 3.0, "loss/clip_frac": 0.01 * s,
                      "loss/entropy": 1.0 / s, "loss/kl": 0.0, "loss/approx_kl": 0.001, "optim/lr": 5e-4,
                      "perf/rollout_s": 1.0, "perf/update_s": 2.0, "rollout/truncated_frac": None})
        if s % 10 == 0:
            lines.append({"step": s, "eval/accuracy": r, "eval/accuracy/colour": r, "eval/accuracy/count": r / 2})
    (path / "metrics.jsonl").write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    (path / "config.yaml").write_text("model:\n  path: tiny\nrollout:\n  group_size: 16\n")
    (path / "samples" / "images" / "step_000040").mkdir(parents=True)
    Image.new("RGB", (64, 64), sample_colour).save(path / "samples" / "images" / "step_000040" / "0_0.png")
    sample = {"step": 40, "data_source": "colour", "row_id": "c-1", "question": "what colour <is> it ?",
              "completion": "<answer> red </answer>", "answer": "red", "scores": {"total": 1.5, "format": None},
              "group_reward": 0.7, "images": ["samples/images/step_000040/0_0.png"]}
    (path / "samples" / "samples.jsonl").write_text(json.dumps(sample) + "\n")
    return path


def plots(page: str) -> dict[str, Image.Image]:
    """{alt title: decoded PNG} of every plot of the page."""
    found = re.findall(r'<img class="plot" alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page)
    return {alt: Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB") for alt, data in found}


def has_colour(image: Image.Image, rgb, tol=12) -> bool:
    return any(all(abs(a - b) <= tol for a, b in zip(px, rgb, strict=True)) for _, px in image.getcolors(1 << 20))


def test_report_draws_every_curve_with_both_runs_and_embeds_the_sample_images(tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b", reward_scale=2.0)
    out = write_report([a, b], tmp_path / "cmp.html")
    page = out.read_text()
    drawn = plots(page)
    for title in ["colour: train reward", "count: eval accuracy", "all sources: train accuracy",
                  "colour: reward component format", "clip fraction", "entropy (per token)", "KL", "learning rate",
                  "completion length (tokens)", "stage times (s)"]:
        assert title in drawn, title
    assert "count: reward components" not in drawn  # count logged no component beside mean and accuracy
    assert "truncated / kept fraction" not in drawn  # only nulls: nothing to draw
    reward = drawn["colour: train reward"]
    assert has_colour(reward, BLUE) and has_colour(reward, ORANGE)  # both runs overlaid
    assert not has_colour(drawn["learning rate"], (0xFF, 0, 0xFF))
    # The sample's own PNG is in the page, byte for byte, and its text is escaped.
    png = (a / "samples/images/step_000040/0_0.png").read_bytes()
    assert page.count(base64.b64encode(png).decode()) == 2  # once per run
    assert "what colour &lt;is&gt; it ?" in page and "<is>" not in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained


def test_missing_run_dir_and_missing_matplotlib_are_clear_errors(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no metrics.jsonl"):
        write_report([tmp_path / "empty"], tmp_path / "x.html")
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a vlrl run directory" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(ReportError, match=r"pip install 'vlrl\[report\]'"):
        write_report([make_run(tmp_path / "run")], tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_cli_writes_the_report_into_the_run_dir(tmp_path, capsys):
    run = make_run(tmp_path / "run", steps=5)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert "colour: train reward" in plots((run / "report.html").read_text())
