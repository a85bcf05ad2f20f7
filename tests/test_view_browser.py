"""``xcam view`` and the static report in a real browser: Debian's chromium driven by Playwright (no browser
download), on the demo model. Skipped when chromium, playwright or gradio is missing. The screenshot of the
viewer is kept under the test's tmp dir and, when XCAM_ARTIFACTS names a folder, copied there."""

import base64
import os
import shutil
import socket
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = os.environ.get("XCAM_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y -q chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (never `playwright install`)")
pytest.importorskip("gradio", reason="pip install 'xcam[view]'")
pytestmark = pytest.mark.torch
WAIT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo():
    pytest.importorskip("torch")
    from xcam.app.models.frameworks import load_framework
    from xcam.app.models.zoo import CAT_DOG_LABELS, DEMO_INPUT_SIZE, DEMO_LAYER, demo_images, demo_model

    return load_framework("torch"), demo_model("torch"), demo_images(), list(CAT_DOG_LABELS), DEMO_LAYER["torch"], \
        DEMO_INPUT_SIZE


@pytest.fixture(scope="module")
def served(demo):
    from xcam.app.jobs import view

    framework, model, images, labels, layer, size = demo
    viewer = view.Viewer(framework, model, "demo", images, labels=labels, layer=layer, input_size=size)
    port = _free_port()
    app = view.serve(viewer, "127.0.0.1", port, block=False, log=None)
    yield viewer, f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _maps(page) -> dict:
    """{title: decoded RGB picture} of the overlays on the page."""
    found = page.eval_on_selector_all("#xcam-maps img", "els => els.map(e => [e.alt, e.src])")
    out = {}
    for title, src in found:
        png = base64.b64decode(src.split(",", 1)[1])
        out[title] = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def _rendered(page, before: int) -> dict:
    """Wait for the render after number ``before``; returns its server time and the shown maps."""
    page.wait_for_function(f"() => Number(document.querySelector('#xcam-time')?.dataset.render || 0) > {before}",
                           timeout=WAIT_MS)
    seconds = float(page.get_attribute("#xcam-time", "data-seconds"))
    return {"seconds": seconds, "maps": _maps(page), "number": int(page.get_attribute("#xcam-time", "data-render"))}


def _pick(page, elem_id: str, text: str) -> None:
    """Type into a Gradio dropdown (its list then shows the matching options) and choose the option whose text
    starts with ``text``."""
    box = page.locator(f"#{elem_id} input[role=combobox]")
    box.click()
    box.fill("")
    box.press_sequentially(text.strip())
    page.locator(f"ul[role=listbox] li[aria-label^='{text}']").first.click()
    page.keyboard.press("Escape")


def _differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_viewer_switches_method_class_and_layer_and_survives_bad_input(served, browser, tmp_path):
    viewer, url = served
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.goto(url)
    first = _rendered(page, 0)
    assert "this machine only" in page.inner_text("#xcam-where")
    assert "cat 0.999" in page.inner_text("#xcam-predicted")
    assert list(first["maps"]) == ["image", "gradcam · cat"]

    _pick(page, "xcam-methods", "layercam")                              # method: a second map beside the first
    method = _rendered(page, first["number"])
    assert list(method["maps"]) == ["image", "gradcam · cat", "layercam · cat"]
    page.locator("#xcam-methods .token-remove[title='Remove 0']").click()  # then gradcam off: only layercam
    method = _rendered(page, method["number"])
    assert list(method["maps"]) == ["image", "layercam · cat"]
    assert _differ(method["maps"]["layercam · cat"], first["maps"]["gradcam · cat"]) > 1.0

    _pick(page, "xcam-classes", "dog")                                   # class: dog beside cat
    klass = _rendered(page, method["number"])
    assert list(klass["maps"]) == ["image", "layercam · cat", "layercam · dog"]
    assert _differ(klass["maps"]["layercam · dog"], klass["maps"]["layercam · cat"]) > 1.0

    page.fill("#xcam-alpha input[type=number]", "0.9")                   # alpha: the same maps, stronger colour
    page.keyboard.press("Enter")
    alpha = _rendered(page, klass["number"])
    assert _differ(alpha["maps"]["layercam · cat"], klass["maps"]["layercam · cat"]) > 1.0
    shot = tmp_path / "view.png"
    page.screenshot(path=str(shot))
    if os.environ.get("XCAM_ARTIFACTS"):
        Path(os.environ["XCAM_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["XCAM_ARTIFACTS"]) / "view.png")
    assert shot.stat().st_size > 10_000

    _pick(page, "xcam-layer", "backbone._blocks.9  ")                      # layer: a new capture, another map
    layer = _rendered(page, alpha["number"])
    assert _differ(layer["maps"]["layercam · cat"], alpha["maps"]["layercam · cat"]) > 1.0
    # a change on cached captures answers in under a second (server time of the render)
    assert max(method["seconds"], klass["seconds"], alpha["seconds"]) < 1.0

    _pick(page, "xcam-layer", "backbone._fc  ")                            # a layer without a spatial output
    page.wait_for_function("() => document.querySelector('#xcam-message').innerText.includes('not a spatial map')",
                           timeout=WAIT_MS)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page.set_input_files("#xcam-upload input[type=file]", str(text))     # a non-image upload
    page.wait_for_function("() => document.querySelector('#xcam-message').innerText.includes('cannot read image')",
                           timeout=WAIT_MS)
    assert "notes.txt" in page.inner_text("#xcam-message")

    _pick(page, "xcam-layer", "backbone.head_act  ")                       # the server is still up and answers
    back = _rendered(page, layer["number"])
    assert page.inner_text("#xcam-message").strip() == ""
    np.testing.assert_array_equal(back["maps"]["layercam · cat"], alpha["maps"]["layercam · cat"])
    with urllib.request.urlopen(url, timeout=30) as reply:
        assert reply.status == 200
    page.close()


def test_the_demo_report_fits_a_1366_px_screen(demo, browser, tmp_path, monkeypatch):
    from xcam.app.jobs import demo as demo_job

    # the demo's report: the lab rows, then the evaluation section (its table, curves and bar charts); a coarser
    # step than the demo's 0.2 for speed: the same table and plots, only fewer points on each curve
    monkeypatch.setattr(demo_job, "DEMO_STEP", 0.5)
    out = tmp_path / "report"
    assert demo_job.run_demo(["torch"], out, ["gradcam", "layercam"], log=None) == 0
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    page.goto((out / "report.html").as_uri())
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366, width
    assert page.locator("table.xcam-lab > tbody > tr > th").count() == 6  # image, features, 2 methods x 2 classes
    # every column of the metrics table and every plot is shown inside the screen, below the lab rows
    lab = page.locator("table.xcam-lab").bounding_box()
    metrics = page.locator("#xcam-evaluation table.xcam-metrics")
    assert metrics.locator("tr").first.locator("th").count() == 6  # method + 5 metrics
    box = metrics.bounding_box()
    assert box["y"] >= lab["y"] + lab["height"] and box["x"] >= 0 and box["x"] + box["width"] <= 1366
    figures = page.eval_on_selector_all("#xcam-evaluation figure img",
                                        "els => els.map(e => [e.getBoundingClientRect().right, e.naturalWidth])")
    assert len(figures) == 7 and all(right <= 1366 and natural > 0 for right, natural in figures), figures
    page.close()
