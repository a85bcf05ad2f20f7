"""The synthetic ground-truth benchmark: a tiny CNN trained in seconds in PyTorch (fixed seed) on 32x32 images of
one shape (square, cross or ring) at a known position beside a distractor dot, ported to Keras; every method's
pointing game (tolerance 2 px) and energy pointing game on held-out images, on both frameworks, as a Markdown
table (the one in README.md), plus the baselines.

    python benchmarks/synthetic.py [--images 200] [--seed 0] [--json out.json]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import torch  # noqa: E402,F401  (torch before tensorflow)

from xcam.app.jobs.synthetic import benchmark, markdown  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200, help="held-out images (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the numbers to this file")
    args = p.parse_args()
    start = time.perf_counter()
    result = benchmark(seed=args.seed, n_test=args.images)
    print(markdown(result))
    print(f"\n(took {time.perf_counter() - start:.1f} s: training, porting and both frameworks)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
