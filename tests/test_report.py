"""report.html: self-contained, and rendered whole by a real headless browser (Debian's chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from roberta_infer.evaluate import accuracy
from roberta_infer.report import Report, Table, latency_histogram, score_tables, write_report

CHROMIUM = shutil.which("chromium")
needs_browser = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                   reason="Debian's chromium is not installed (`make test` installs it where it can)")


def example(tmp_path):
    scores = accuracy(np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), ["negative", "positive"], np.array([0, 1, 1]),
                      ["negative", "positive"])
    sections = [Table("Throughput", ["mode", "sentences/s"], [["ours <int8>", "241.0"], ["baseline", "50.1"]]),
                latency_histogram(np.random.default_rng(0).gamma(4, 2, 200), "Latency"), *score_tables(scores)]
    return write_report(tmp_path / "report.html", Report("roberta-infer test", "a test report", sections),
                        {"cpu": "Test CPU", "physical_cores": 2})


def test_report_is_one_self_contained_file(tmp_path):
    page = example(tmp_path).read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from anywhere
    assert "ours &lt;int8&gt;" in page  # cells are escaped
    assert page.count("<table>") == 4 and page.count('<img src="data:image/png;base64,') == 1
    assert "<td>roberta-infer</td>" in page and "<td>Test CPU</td>" in page
    assert not (tmp_path / "report.html.partial").exists()


def rendered_dom(path, profile) -> str:
    """The page's DOM once headless chromium has loaded it (an empty string where chromium is missing outside CI)."""
    if CHROMIUM is None and not os.environ.get("CI"):
        return ""
    return subprocess.run([*browser(profile), "--dump-dom", path.as_uri()], capture_output=True, text=True,
                          timeout=120).stdout


def assert_report_renders(path, profile, *, tables: int, images: int) -> None:
    """A report.html that is self-contained and, in a real browser, shows its tables and decodes every image."""
    page = path.read_text()
    assert page.count("<table>") == tables and page.count('<img src="data:image/png;base64,') == images
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    dom = rendered_dom(path, profile)
    if dom:
        assert f'data-images-rendered="{images}"' in dom and len(re.findall(r"<table>", dom)) == tables


def browser(profile) -> list[str]:
    return [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
            f"--user-data-dir={profile}"]


@pytest.mark.browser
@needs_browser
def test_a_headless_browser_renders_the_tables_and_images(tmp_path):
    path = example(tmp_path)
    dom = rendered_dom(path, tmp_path / "profile")
    assert 'data-images-rendered="1"' in dom  # the browser decoded the one plot
    assert len(re.findall(r"<table>", dom)) == 4 and "Confusion matrix" in dom
    common = browser(tmp_path / "profile")
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,2000", path.as_uri()], capture_output=True,
                   timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1200) and pixels.std() > 0.01  # a page was painted, not a blank
