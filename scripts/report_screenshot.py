"""Screenshot of a report.html in headless Chromium (docs/report.png is made with it from `make demo`'s report).

    python scripts/report_screenshot.py demo-out/sr/_reports/<run>/report.html docs/report.png
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from selenium import webdriver


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path)
    p.add_argument("png", type=Path)
    p.add_argument("--size", default="1280,2000", help="window width,height (default %(default)s)")
    args = p.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={args.size}"):
        options.add_argument(arg)
    # an explicit driver: Selenium Manager would otherwise look for one on the network
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")),
                              options=options)
    try:
        driver.get(args.report.resolve().as_uri())
        driver.save_screenshot(str(args.png))
    finally:
        driver.quit()
    print(f"{args.png} ({args.png.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
