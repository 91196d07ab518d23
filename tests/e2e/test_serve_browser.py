"""The drawing page in a real browser (Debian's chromium driven by playwright): a digit drawn with mouse
strokes and an uploaded PNG are read, and the labels shown equal `python -m digitcls.predict`'s for the same
images (the drawing as the canvas sent it). A screenshot of the page is saved.

`DIGITCLS_DOCS_SCREENSHOT_MODEL=<a trained .ckpt>` runs it with that model and writes the screenshot to
docs/serve_page.png (how the README's picture is made); otherwise a small untrained model is used.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.helpers import Served, cli_env, draw_digits, serving, varied_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "serve_page.png"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[serve]'")
pytest.importorskip("litserve", reason="litserve is not installed: pip install -e '.[serve]'")
if not CHROMIUM.is_file():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium: apt-get install -y chromium "
                "(.ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve_browser")
    trained = os.environ.get("DIGITCLS_DOCS_SCREENSHOT_MODEL")
    model = Path(trained) if trained else varied_checkpoint(root / "varied.ckpt")
    with serving(model, root / "serve.log", ["log_level=warning"]) as server:
        yield server


@pytest.fixture(scope="module")
def page(served: Served) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 760, "height": 470})
        page.goto(served.url + "/")
        page.wait_for_selector("#chart .bar")  # class names came from /info
        yield page
        browser.close()


def sent(page: sync_api.Page) -> int:
    return int(page.evaluate("document.body.dataset.sent"))


def settle(page: sync_api.Page, sent_before: int, new_requests: int) -> None:
    """Wait until the page has sent ``new_requests`` more requests and every request it sent has finished:
    then what it shows is the answer to the newest one."""
    page.wait_for_function(
        f"Number(document.body.dataset.sent) >= {sent_before + new_requests}"
        " && document.body.dataset.done === document.body.dataset.sent",
        timeout=120_000,
    )


def shown_label(page: sync_api.Page) -> str:
    assert page.inner_text("#error") == ""
    return page.inner_text("#label").strip()


def draw_seven(page: sync_api.Page) -> None:
    """Two mouse strokes on the canvas: the bar and the stem of a 7."""
    box = page.locator("#pad").bounding_box()
    for (x0, y0), (x1, y1) in (((0.25, 0.22), (0.75, 0.22)), ((0.75, 0.22), (0.42, 0.85))):
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=12)
        page.mouse.up()


def predict_labels(served: Served, folder: Path) -> dict[str, str]:
    """`python -m digitcls.predict` on the folder, as a user runs it, with the page's preprocessing."""
    out = folder.parent / "predicted"
    done = subprocess.run(
        [sys.executable, "-m", "digitcls.predict", f"model_path={served.model_path}", f"test_path={folder}",
         "preprocess=mnist", "num_workers=0", f"output={out / 'pre.csv'}", f"errors_output={out / 'errors.csv'}",
         "grid_output=null"],
        cwd=folder.parent, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_csv(out / "pre.csv", dtype={"label": str})
    return dict(zip(frame.image_id, frame.label, strict=True))


def test_drawn_and_uploaded_digits_are_read_like_predict(page: sync_api.Page, served: Served, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    before = sent(page)
    draw_seven(page)
    settle(page, before, 2)  # one request per stroke
    drawn_label = shown_label(page)
    canvas_png = page.evaluate("document.getElementById('pad').toDataURL('image/png')").split(",", 1)[1]
    (images / "drawing.png").write_bytes(base64.b64decode(canvas_png))
    bars = page.locator("#chart .bar span")
    assert bars.count() == 10
    widths = [float(bars.nth(i).evaluate("e => parseFloat(e.style.width)")) for i in range(10)]
    assert sum(widths) == pytest.approx(100, abs=1) and max(widths) > 0
    screenshot = tmp_path / "serve_page.png"
    page.screenshot(path=str(screenshot))
    assert cv2.imread(str(screenshot)).shape[:2] == (470, 760)
    if os.environ.get("DIGITCLS_DOCS_SCREENSHOT_MODEL"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(screenshot, DOCS_SCREENSHOT)

    photo = images / "photo.png"  # a generated 28x28 digit, white on black, as in the test set
    cv2.imwrite(str(photo), draw_digits(np.array([3]), seed=21)[0])
    before = sent(page)
    page.set_input_files("#file", str(photo))
    settle(page, before, 1)
    uploaded_label = shown_label(page)

    expected = predict_labels(served, images)
    assert drawn_label == expected["drawing.png"]
    assert uploaded_label == expected["photo.png"]


def test_a_bad_photo_shows_the_servers_message(page: sync_api.Page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    before = sent(page)
    page.set_input_files("#file", str(notes))
    settle(page, before, 1)
    assert "notes.png is corrupt or not a supported image" in page.inner_text("#error")
    assert page.inner_text("#label").strip() == "?"
