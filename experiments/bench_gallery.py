"""What explaining a gallery's picks costs against scoring the same photos (issue 15: at most 3x for Saliency and Grad-CAM).

A gallery (wildvision.explain.gallery) explains only its picks, 16 for `--top 4`, with one batched `saliency.examine` call
from the files. This times that call for Saliency and for Grad-CAM against `predict_paths` on the same 16 demo photo
files (decoding included on both sides), interleaved and best of the repeats, in one process after a warm-up.
The last line is `ratio: <the slower of Saliency and Grad-CAM / predict_paths>`.

    python experiments/bench_gallery.py [--images 16] [--repeat 3]
"""

from __future__ import annotations

import argparse

from benchmarking import demo_photos, report_throughput, time_interleaved

from wildvision.explain import saliency
from wildvision.explain.gallery import DISPLAY_MAX
from wildvision.predict import load_model, predict_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16, help="photos explained, as a gallery of --top 4 has (default: 16)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats; the best is reported (default: 3)")
    args = parser.parse_args()
    paths = demo_photos(args.images)
    loaded = load_model("default", device="cpu")
    variants = {"predict_paths": lambda batch: predict_paths(loaded, batch)}
    for method in saliency.FAST_METHODS:
        variants[method] = lambda batch, method=method: saliency.examine(loaded, batch, method, display_max=DISPLAY_MAX)
    seconds = time_interleaved(variants, paths[:4], paths, args.repeat)
    print(f"{len(paths)} demo photo files, default model ({loaded.arch}) on CPU; best of {args.repeat} interleaved repeats")
    rate = report_throughput(len(paths), seconds)
    worst = max(rate["predict_paths"] / rate[method] for method in saliency.FAST_METHODS)
    for method in saliency.FAST_METHODS:
        print(f"  {method}: {rate['predict_paths'] / rate[method]:.2f}x the time of predict_paths (target <= 3)")
    print(f"ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
