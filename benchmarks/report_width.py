"""The demo report's width in a real browser (issue 20): ``xcam demo`` on both frameworks, then
``document.documentElement.scrollWidth`` (and the page height) of every report.html in headless Chromium (Debian's
package, driven by Playwright) at viewports of 1366, 1280 and 1024 px. A page fits when its width equals the
viewport's.

    python benchmarks/report_width.py [out_dir]
"""

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from xcam.app.jobs import demo as demo_job


def main(out: Path):
    assert demo_job.run_demo(["torch", "tf"], out, ["gradcam", "layercam"], log=None) == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        print("| viewport | page | scrollWidth | scrollHeight |\n|---|---|---|---|")
        for width in (1366, 1280, 1024):
            page = browser.new_page(viewport={"width": width, "height": 800})
            for f in sorted(out.rglob("report.html")):
                page.goto(f.as_uri())
                print(f"| {width} | {f.relative_to(out)} | {page.evaluate('document.documentElement.scrollWidth')} | "
                      f"{page.evaluate('document.documentElement.scrollHeight')} |", flush=True)
            page.close()
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "demo")
