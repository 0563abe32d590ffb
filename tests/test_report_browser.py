"""summary.html opened in a real browser: Debian's chromium, driven by Selenium through chromedriver.

The report is made by `write_report` from scored videos with real files beside them (crops and
per-frame PNGs, a side-by-side H.264 clip from the bundled ffmpeg), under a results folder whose
path has a space and non-ASCII letters, with a video whose id holds HTML and quotes, a video
without its crops image, and a failed video whose error holds a script. Chromium cannot download
anything here; where it or its driver is missing the tests skip with a line naming the packages.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

from videnhance.layout import Results
from videnhance.report import write_report
from videnhance.runs import Outcome

from .helpers import CHROMEDRIVER, CHROMIUM, REPO, chromium, lavfi_clip

MISSING = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the dev extra installs it
    MISSING.append("the selenium package (pip install -e '.[dev]')")

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs Debian's chromium and chromium-driver (apt install "
                                                     f"chromium chromium-driver); missing: {', '.join(MISSING)}")

ODD = "<img src=x onerror=\"window.pwned=2\"> 'odd' & more"  # an id holding HTML, quotes and an ampersand
VIDEOS = {"alpha": ("ground truth", 2.0), "beta": ("ground truth", 1.0), ODD: ("self-validation", 0.6)}
SCRIPT = "<script>window.pwned = 1</script>"


def _scores(path: Path, video: str, protocol: str, gain: float) -> None:
    rows = [{"video": video, "protocol": protocol, "frame": f, "method": m, "psnr_y": 30 + off + 0.1 * f,
             "ssim_y": 0.9 + off / 100, "psnr_rgb": 29 + off,
             "flicker": float("nan") if protocol != "ground truth" or f == 0 else 1 + off / 10}
            for f in range(4) for m, off in {"bicubic": 0, "milestone": 1.5, "fine_tuned": 1.5 + gain}.items()]
    pd.DataFrame(rows).to_csv(path, index=False)


def _png(path: Path, width: int, height: int) -> None:
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    results = Results(str(tmp_path_factory.mktemp("report") / "my results ü"))
    clip = None
    for video, (protocol, gain) in VIDEOS.items():
        files = results.video(video)
        Path(files.folder).mkdir(parents=True)
        _scores(Path(files.scores()), video, protocol, gain)
        rounds = [{"round": 1, "lr": 3e-4, "kept": True, "guard": "fine-tuned beats the base model",
                   "signals": {"near_scale": {"gain_db": 0.3, "stderr_db": 0.04},
                               "frame": {"gain_db": 0.2, "stderr_db": 0.05}}}]
        Path(files.verdict).write_text(json.dumps({
            "kept": "fine_tuned", "reason": "fine-tuned beats the base model", "signal": "near_scale",
            "gain_db": 0.3, "gain_stderr_db": 0.04, "seconds": 10.0, "round_report": rounds}))
        _png(Path(files.per_frame), 320, 120)
        if video != ODD:  # this one failed after scoring: no crops image
            _png(Path(files.crops), 480, 120)
        if clip is None:
            clip = lavfi_clip(Path(files.side_by_side), "128x48", 1, 25, "-c:v", "libx264", "-pix_fmt", "yuv420p")
        else:
            shutil.copy(clip, files.side_by_side)
    bad = results.video("bad")
    Path(bad.log("probe")).parent.mkdir(parents=True)
    Path(bad.log("probe")).write_text("probe: bad.mp4 is not a readable video\n")
    outcomes = [Outcome(v, "done") for v in VIDEOS]
    outcomes += [Outcome("bad", "failed", "probe", f"bad.mp4: not a readable video {SCRIPT}", bad.log("probe"))]
    Path(results.report("")).mkdir()
    write_report([results.video(v).scores() for v in VIDEOS], [results.video(v).verdict for v in VIDEOS],
                 scales={v: 2 for v in VIDEOS}, outcomes=outcomes, out_csv=results.report("summary.csv"),
                 out_md=results.report("summary.md"), out_html=results.report("summary.html"),
                 out_gains_png=results.report("gains.png"), out_run=results.report("run.json"))
    return Path(results.report("summary.html"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, report):
    browser.get(report.as_uri())
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
    return browser


def _rows(driver, table: str) -> list[list[str]]:
    return [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
            for r in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr") if r.is_displayed()]


def test_the_page_loads_without_errors_and_opens_on_the_numbers(page):
    severe = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    sentences = [p.text for p in page.find_elements(By.CSS_SELECTOR, "p.headline")]
    assert sentences == [
        "2 ground-truth clips: delivered +1.50 dB over the base model and +3.00 dB over bicubic "
        "(mean Y-PSNR; 2 of 2 fine-tuned).",
        "1 self-validated clip: delivered +0.60 dB over the base model and +2.10 dB over bicubic "
        "(mean Y-PSNR; 1 of 1 fine-tuned).",
        "1 of 4 videos did not finish: below, with the step and the error."]
    rows = {r[0]: r for r in _rows(page, "summary")}
    # video, ×, frames, bicubic, base, delivered, Δ vs base, Δ vs bicubic, SSIM, flicker, kept, status
    assert rows["alpha"] == ["alpha", "2", "4", "30.15", "31.65", "33.65", "+2.00", "+3.50", "0.9350", "1.35",
                             "fine_tuned", "done"]
    assert rows[ODD][:6] == [ODD, "2", "4", "30.15", "31.65", "32.25"]  # the id shown as text, not as markup
    assert page.find_elements(By.CSS_SELECTOR, "#summary img, details.video summary img") == []
    # the compact table fits the 1400 px window; the full CSV columns wait behind their toggle
    assert page.execute_script("return document.getElementById('summary').getBoundingClientRect().right") <= 1400
    assert not page.find_element(By.ID, "full").is_displayed()


def test_sorting_and_filtering(page):
    heading = next(h for h in page.find_elements(By.CSS_SELECTOR, "#summary th") if h.text == "delivered Y-PSNR (dB)")
    heading.click()
    values = [r[5] for r in _rows(page, "summary")]
    assert values == sorted(values, key=float)
    heading.click()
    assert [r[5] for r in _rows(page, "summary")] == sorted(values, key=float, reverse=True)
    box = page.find_element(By.ID, "filter")
    box.send_keys("alpha")
    assert [r[0] for r in _rows(page, "summary")] == ["alpha"]
    box.clear()
    box.send_keys("failed probe")
    assert _rows(page, "summary") == [] and [r[0] for r in _rows(page, "failed")] == ["bad"]


def _section(page, video: str):
    (link,) = [a for a in page.find_elements(By.CSS_SELECTOR, "#summary td a") if a.text == video]
    return page.find_element(By.ID, link.get_attribute("href").split("#")[1])


def test_a_video_section_shows_its_pictures_and_plays_its_video(page):
    section = _section(page, "alpha")
    assert section.get_attribute("open") is not None  # few videos: every section opens with the page
    page.execute_script("arguments[0].scrollIntoView()", section)
    images = section.find_elements(By.TAG_NAME, "img")
    assert len(images) == 2
    WebDriverWait(page, 10).until(lambda d: all(d.execute_script("return arguments[0].complete && "
                                                                  "arguments[0].naturalWidth > 0", i) for i in images))
    video = section.find_element(By.TAG_NAME, "video")
    page.execute_script("arguments[0].load()", video)
    WebDriverWait(page, 15).until(lambda d: d.execute_script("return arguments[0].readyState", video) >= 2)
    assert page.execute_script("return arguments[0].videoWidth", video) == 128
    rounds = section.find_elements(By.CSS_SELECTOR, "table.rounds tbody tr")
    assert [c.text for c in rounds[0].find_elements(By.TAG_NAME, "td")][:5] == [
        "1", "0.0003", "+0.300 ± 0.040", "+0.200 ± 0.050", "kept"]
    # the video whose crops image is missing: its section shows what there is, and no broken image
    odd = _section(page, ODD)
    assert ODD in odd.find_element(By.TAG_NAME, "summary").text and len(odd.find_elements(By.TAG_NAME, "img")) == 1
    # a row's name links to its section, which opens when it is closed
    target = _section(page, "beta")
    page.execute_script("arguments[0].open = false; window.scrollTo(0, 0)", target)
    page.find_element(By.LINK_TEXT, "beta").click()
    assert page.execute_script("return location.hash") == "#" + target.get_attribute("id")
    assert target.get_attribute("open") is not None


def test_a_failed_video_links_to_its_log_and_no_script_runs(page):
    (row,) = _rows(page, "failed")
    assert row[:3] == ["bad", "failed", "probe"] and row[3] == f"bad.mp4: not a readable video {SCRIPT}"
    assert page.execute_script("return window.pwned") is None
    href = page.find_element(By.CSS_SELECTOR, "#failed a").get_attribute("href")
    assert Path(unquote(urlparse(href).path)).read_text().startswith("probe: bad.mp4")


def test_a_screenshot_for_the_docs(page, report):
    """Written under the report's results folder; after `make demo` the demo's own page too
    (results/report/summary.png, the README's picture)."""
    targets = [(report, report.parent / "summary.png")]
    demo = REPO / "results" / "report" / "summary.html"
    if demo.is_file() and os.access(demo.parent, os.W_OK):
        targets.append((demo, demo.parent / "summary.png"))
    from PIL import Image

    for html_file, png in targets:
        page.get(html_file.as_uri())
        time.sleep(0.5)  # lazy images in view
        assert page.save_screenshot(str(png))
        assert Image.open(png).size == (1400, 1000)
