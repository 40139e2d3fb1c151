"""The report of a real tiny run, opened in headless Chromium: its screenshot shows the plots and the sample
images, not a blank or broken page. Skips where Chromium is absent (.ci/run installs Debian's package)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from PIL import Image

from vlrl.report import write_report
from vlrl.samples import read_samples
from vlrl.trainer import Trainer

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BLUE = (0x1F, 0x77, 0xB4)  # matplotlib's first line colour: only the plots draw it
MAGENTA = (255, 0, 255)  # painted into one sample image: nothing else on the page has it


def browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        pytest.skip("no headless browser: install Chromium (Debian: apt-get install -y chromium; .ci/run does)")
    return found


def screenshot(page, out, width=1300, height=6000) -> Image.Image:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={out}", f"--window-size={width},{height}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=180)
    return Image.open(out).convert("RGB")


def pixels_near(image: Image.Image, rgb, tol=10) -> int:
    return sum(n for n, px in image.getcolors(1 << 24) if all(abs(a - b) <= tol for a, b in zip(px, rgb, strict=True)))


def test_report_of_a_tiny_run_renders_plots_and_sample_images(tiny_config, tmp_path):
    browser()  # skip before training when there is nothing to look with
    run = tmp_path / "run"
    Trainer(tiny_config("trainer.total_steps=3", "trainer.eval_every=3", "trainer.log_samples_every=3")).fit()
    samples = read_samples(run)
    assert samples and all(s["images"] for s in samples)
    Image.new("RGB", (48, 48), MAGENTA).save(run / samples[0]["images"][0])
    page = write_report([run], tmp_path / "report.html")

    shot = screenshot(page, tmp_path / "shot.png")
    # The window is taller than the page: measure down to the page's last drawn row.
    ink = Image.eval(shot.convert("L"), lambda v: 255 if v < 250 else 0)
    box = ink.getbbox()
    assert box is not None and box[3] > 2000, f"the page is (almost) blank: drawn area {box}"
    page_area = shot.crop((0, 0, shot.width, box[3]))
    white = pixels_near(page_area, (255, 255, 255), tol=4)
    assert 1 - white / (page_area.width * page_area.height) > 0.05, "the page is (almost) blank"
    assert len(shot.getcolors(1 << 24)) > 200  # anti-aliased curves, text and images, not a flat error page
    assert pixels_near(shot, BLUE) > 2000, "no plot line drawn"
    assert pixels_near(shot, MAGENTA) > 0.5 * 160 * 160, "the sample image is not shown (160 px wide)"
