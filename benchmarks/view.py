"""The server time of each change in ``xcam view`` on the demo model (what the page runs: ``view.respond``, the
maps, overlays and the downloads written): the first look at an image (a capture), then a change of method, class,
alpha, colormap (cached capture) and of layer (a new capture), and a method that runs the model again (scorecam).

    python benchmarks/view.py [repeats] [framework] [scorecam]
"""

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from xcam.app.jobs import view  # noqa: E402
from xcam.app.models.frameworks import load_framework  # noqa: E402
from xcam.app.models.zoo import CAT_DOG_LABELS, DEMO_INPUT_SIZE, DEMO_LAYER, demo_images, demo_model  # noqa: E402

OTHER_LAYER = {"torch": "backbone._blocks.9", "tf": "_blocks_9_add"}


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    fw = sys.argv[2] if len(sys.argv) > 2 else "torch"
    start = time.perf_counter()
    framework, model = load_framework(fw), demo_model(fw)
    viewer = view.Viewer(framework, model, "demo", demo_images(), labels=list(CAT_DOG_LABELS), layer=DEMO_LAYER[fw],
                         input_size=DEMO_INPUT_SIZE)
    print(f"{fw}: model loaded and viewer ready in {time.perf_counter() - start:.1f} s")
    layer, other = DEMO_LAYER[fw], OTHER_LAYER[fw]
    rows = {}
    with tempfile.TemporaryDirectory() as out:
        for key in list(viewer.pictures)[:repeats]:
            def step(name, *args):
                rows.setdefault(name, []).append(view.respond(viewer, key, *args, out)["seconds"])

            step("first look (capture)", layer, ["gradcam"], [], 0.5, "jet")
            step("method", layer, ["layercam"], [], 0.5, "jet")
            step("class", layer, ["layercam"], ["dog"], 0.5, "jet")
            step("two classes x two methods", layer, ["gradcam", "layercam"], ["cat", "dog"], 0.5, "jet")
            step("alpha", layer, ["gradcam", "layercam"], ["cat", "dog"], 0.8, "jet")
            step("colormap", layer, ["gradcam", "layercam"], ["cat", "dog"], 0.8, "turbo")
            step("layer (new capture)", other, ["gradcam"], ["cat"], 0.8, "turbo")
            step("back to a cached layer", layer, ["gradcam"], ["cat"], 0.8, "turbo")
            if "scorecam" in sys.argv[3:]:  # 1,280 masked forwards per map: minutes on 2 cores
                step("scorecam (runs the model again)", layer, ["scorecam"], ["cat"], 0.8, "turbo")
    for name, times in rows.items():
        print(f"{name:<34} median {statistics.median(times):7.3f} s  max {max(times):7.3f} s  ({len(times)} images)")


if __name__ == "__main__":
    main()
