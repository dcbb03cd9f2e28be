"""Print BasicSR 1.4.2's NIQE of image files: how tests/test_metrics.py's reference values were made.

Not part of srcore: run it in a separate virtualenv with ``pip install --no-deps basicsr==1.4.2`` and
``pip install numpy scipy opencv-python-headless torch``. BasicSR's package ``__init__`` imports every
architecture and dataset; this loads only the metric's modules.

    python scripts/basicsr_niqe_reference.py ../shared/datasets/Set5/HR/*.png
"""

import glob
import importlib
import os
import sys
import types

import scipy.ndimage

site = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "basicsr"))[0]
for name in ("basicsr", "basicsr.metrics", "basicsr.utils"):
    package = types.ModuleType(name)
    package.__path__ = [os.path.join(site, *name.split(".")[1:])]
    sys.modules[name] = package
sys.modules.setdefault("scipy.ndimage.filters", scipy.ndimage)  # removed from newer scipy
sys.modules["basicsr.utils"].bgr2ycbcr = importlib.import_module("basicsr.utils.color_util").bgr2ycbcr

import cv2  # noqa: E402
from basicsr.metrics.niqe import calculate_niqe  # noqa: E402

for path in sys.argv[1:]:
    image = cv2.imread(path)
    scores = [calculate_niqe(image, crop, input_order="HWC", convert_to="y") for crop in (0, 4)]
    print(os.path.basename(path), *(f"{s:.4f}" for s in scores))
