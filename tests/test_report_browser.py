"""report.html in a real headless browser (the system's Chromium through Selenium): it renders without console
errors, the before/after slider moves, the per-image table sorts, filters and pages."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import s3fs
from bucket_helpers import HOSTILE_BAD_KEY, HOSTILE_KEYS, summary_of
from PIL import Image

from pipelines.upscale import REPORT_SCHEMA, UpscaleJob
from pipelines.upscale.report import ReportWriter

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the 'dev' extra) is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no Chromium and chromedriver on this machine "
                                "(Debian/Ubuntu: apt-get install chromium chromium-driver; `make browser`)")


def report_with_rows(tmp_path: Path, n: int = 230) -> Path:
    """A report of ``n`` rows: real before/after files (one RGBA), failures of two causes, skipped rows."""
    rng = np.random.default_rng(0)
    files = tmp_path / "files"
    files.mkdir()
    rows = []
    for i in range(n):
        name = str(files / f"img{i:04d}.png")
        if i % 23 == 5:
            rows.append({"input": name, "status": "failed", "error": f"{name}: truncated or corrupt PNG ({i} bytes)"})
            continue
        if i % 31 == 7:
            rows.append({"input": name, "status": "failed", "error": f"{name}: empty file (0 bytes)"})
            continue
        if i % 17 == 3:
            rows.append({"input": name, "status": "skipped", "model": "m", "scale": 4.0})
            continue
        out = str(files / f"img{i:04d}_out.png")
        yy, xx = np.mgrid[0:40, 0:50]  # previews are read back from these files
        lr = np.stack([(xx * 5 + i * 20) % 256, (yy * 6) % 256, rng.integers(0, 256, (40, 50))], 2).astype(np.uint8)
        if i == 1:  # RGBA: its preview shows transparency on a checkerboard
            lr = np.concatenate([lr, np.where(xx < 25, 255, 0)[..., None].astype(np.uint8)], 2)
        Image.fromarray(lr).save(name)
        Image.fromarray(np.repeat(np.repeat(lr, 4, 0), 4, 1)).save(out)
        rows.append({"input": name, "output": out, "status": "ok", "input_width": 50, "input_height": 40,
                     "output_width": 200, "output_height": 160, "upscale_s": 0.05 + (i % 7) / 100,
                     "lr_psnr": 25.0 + (i * 7) % 20 if i >= 2 else 20.0 + i, "model": "m", "scale": 4.0,
                     "device": "cpu" if i % 2 else "NVIDIA H200", "node": f"node{i % 3}", "read_s": 0.01,
                     "decode_s": 0.02, "encode_s": 0.03, "write_s": 0.01, "check_s": 0.01})
    writer = ReportWriter(str(tmp_path / "_reports" / "r2"), previews=4)
    writer.add(pa.Table.from_pylist([{k: r.get(k) for k in REPORT_SCHEMA.names} for r in rows], schema=REPORT_SCHEMA))
    writer.finish(UpscaleJob(input=str(files), output=str(tmp_path), run_id="r2"), listed=n, wall_s=75.0)
    return tmp_path / "_reports" / "r2" / "report.html"


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,2400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_report_renders_without_errors_and_its_slider_and_table_work(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = report_with_rows(tmp_path)
    browser.get(page.as_uri())
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    assert "srcore upscale report" in browser.title or browser.find_element(By.TAG_NAME, "h1").text

    # the slider: moving the range changes how much of the output shows
    pair = browser.find_elements(By.CSS_SELECTOR, ".pair")
    assert len(pair) == 4
    after = pair[0].find_element(By.CSS_SELECTOR, ".after")
    assert after.value_of_css_property("width") == after.find_element(By.XPATH, "..").value_of_css_property("width") \
        or after.get_attribute("style") == "width: 50%;"
    browser.execute_script("var r = arguments[0]; r.value = 80; r.dispatchEvent(new Event('input'));",
                           pair[0].find_element(By.CSS_SELECTOR, "input[type=range]"))
    assert after.get_attribute("style") == "width: 80%;"
    pair[0].find_element(By.CSS_SELECTOR, ".slider").click()  # full-resolution zoom
    zoom = browser.find_element(By.ID, "zoom")
    assert zoom.is_displayed() and len(zoom.find_elements(By.TAG_NAME, "img")) == 2
    zoom.click()
    assert not zoom.is_displayed()

    # the table: 50 rows a page, sortable by LR-consistency, filterable by status and text
    info = browser.find_element(By.ID, "rows-info")
    assert info.text.startswith("230 of 230 rows; page 1 of 5")
    headers = browser.find_elements(By.CSS_SELECTOR, "#rows th")
    lr_column = [h.text for h in headers].index("lr_psnr")
    headers[lr_column].click()
    first = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")[0].find_elements(By.TAG_NAME, "td")
    assert float(first[lr_column].text) == 20.0  # ascending: the least consistent first
    headers[lr_column].click()
    first = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")[0].find_elements(By.TAG_NAME, "td")
    assert float(first[lr_column].text) == 44.0
    Select(browser.find_element(By.ID, "rows-status")).select_by_visible_text("failed")
    failed = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
    assert failed and all(r.find_elements(By.TAG_NAME, "td")[1].text == "failed" for r in failed)
    browser.find_element(By.ID, "rows-filter").send_keys("empty file")
    assert info.text.startswith(f"{len([i for i in range(230) if i % 31 == 7 and i % 23 != 5])} of 230")
    browser.find_element(By.ID, "rows-next").click()  # one page only: stays
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]

    shot = os.environ.get("SRCORE_REPORT_SCREENSHOT")  # docs/report.png is made this way
    browser.get(page.as_uri())
    browser.save_screenshot(shot or str(tmp_path / "report.png"))
    assert Path(shot or tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.usefixtures("shared_ray")
@pytest.mark.xdist_group("ray")
def test_a_real_runs_report_shows_hostile_names_as_text_and_runs_none_of_them(hostile_run, tmp_path, browser):
    """The bucket job over keys, metadata and error text that carry markup and script: in Chromium every view
    of report.html is opened, clicked and sorted, each name reads as the text it is, and nothing of theirs runs
    (no injected element, no handler attribute, window.pwned never set). The page's policy blocks an inline
    handler even where one is planted by hand."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    summary = summary_of(hostile_run)
    assert (summary["ok"], summary["failed"]) == (4, 1)
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    page = tmp_path / "report.html"
    page.write_bytes(fs.cat_file(summary["report"].removeprefix("s3://") + "/report.html"))
    inputs = {f"s3://hostile/in/{key}" for key in [*HOSTILE_KEYS.values(), HOSTILE_BAD_KEY]}

    browser.get(page.as_uri())
    pwned = "return window.pwned === undefined ? null : String(window.pwned)"
    assert browser.execute_script(pwned) is None
    # every before/after pair: its caption and its zoom name the input as text
    pairs = browser.find_elements(By.CSS_SELECTOR, ".pair")
    assert len(pairs) == 4
    shown = set()
    for pair in pairs:
        caption = pair.find_element(By.TAG_NAME, "figcaption").text
        shown |= {name for name in inputs if caption.startswith(name)}
        pair.find_element(By.CSS_SELECTOR, ".slider").click()
        zoom = browser.find_element(By.ID, "zoom")
        assert zoom.is_displayed()
        assert zoom.find_element(By.TAG_NAME, "p").text.startswith(pair.get_attribute("data-name") + " (click")
        assert len(zoom.find_elements(By.TAG_NAME, "img")) == 2
        zoom.click()
    assert shown == inputs - {f"s3://hostile/in/{HOSTILE_BAD_KEY}"}
    # the failure, grouped by cause: its example quotes the name as text
    errors = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, "td.err"))
    assert f"s3://hostile/in/{HOSTILE_BAD_KEY}" in errors
    # the table: every column sorted both ways, filtered by each name; every cell's text is the value itself
    headers = browser.find_elements(By.CSS_SELECTOR, "#rows th")
    for header in headers:
        header.click()
        header.click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
    assert {r.find_elements(By.TAG_NAME, "td")[0].text for r in rows} == inputs
    box = browser.find_element(By.ID, "rows-filter")
    for name in inputs:
        box.clear()
        box.send_keys(name)
        cells = [r.find_elements(By.TAG_NAME, "td")[0]
                 for r in browser.find_elements(By.CSS_SELECTOR, "#rows tbody tr")]
        assert [c.text for c in cells] == [name] and cells[0].get_attribute("title") == name
    box.clear()
    for status in ("failed", "ok", "any status"):
        Select(browser.find_element(By.ID, "rows-status")).select_by_visible_text(status)
    # nothing of theirs became part of the page
    planted = browser.execute_script(
        "var found = [];"
        "document.querySelectorAll('*').forEach(function(el){ for (var a of el.attributes) {"
        "  if (a.name.startsWith('on')) found.push(el.tagName + ' ' + a.name); } });"
        "return found.concat(Array.from(document.scripts).filter(function(s){ return s.type !== 'application/json'"
        "  && s.textContent.indexOf('pwned') >= 0; }).map(function(s){ return 'script'; }));")
    assert planted == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 2  # the table's data and the page's own
    assert browser.execute_script(pwned) is None
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    # the policy: a handler planted by hand does not run either (the page's own script did, above)
    browser.execute_script("document.body.insertAdjacentHTML('beforeend', "
                           "'<img src=\"data:,\" onerror=\"window.pwned=&quot;planted&quot;\">');")
    time.sleep(0.5)
    assert browser.execute_script(pwned) is None
    assert any("Content Security Policy" in e["message"] for e in browser.get_log("browser"))
