"""The report of a real run, opened in headless Chromium with the network off: it loads without
console errors or failed requests, every image decodes, the tables are there and sort, and the
screenshot is not blank."""
from __future__ import annotations

import io

import numpy as np
import pytest

from vareff.cli import main

from chromium import find_chromium, open_page
from report_helpers import EXCERPT, GFF, excerpt_s5_rows, labelled_vcf

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium/chrome executable on PATH "
                                "(Debian: apt-get install chromium; .ci/run installs it)")

CHECK = """JSON.stringify((() => {
  const imgs = Array.from(document.images);
  const top = document.getElementById("top-table");
  const col = Array.from(top.tHead.rows[0].cells).findIndex(th => th.textContent === "pos");
  top.tHead.rows[0].cells[col].click();  // sort by position (descending first)
  const pos = Array.from(top.tBodies[0].rows).map(r => parseFloat(r.cells[col].getAttribute("data-v")));
  return {
    tables: Array.from(document.querySelectorAll("table")).map(t => t.id),
    rows: Object.fromEntries(Array.from(document.querySelectorAll("table")).map(t => [t.id, t.rows.length])),
    images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100).length,
    hist: document.querySelectorAll("figure.hist img").length,
    curves: document.querySelectorAll("figure.curve img").length,
    sortedDesc: pos.every((v, k) => k === 0 || pos[k - 1] >= v),
    title: document.title,
  };
})())"""


@pytest.fixture(scope="module")
def report(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    table = d / "am.arrow"
    assert main(["am-build", str(shared_data / EXCERPT), "-o", str(table), "--no-progress"]) == 0
    vcf = labelled_vcf(excerpt_s5_rows(shared_data), d / "s5.vcf")
    html = d / "report.html"
    assert main(["evaluate", str(vcf), "--alphamissense", str(table), "--annotation", str(shared_data / GFF),
                 "-o", str(html), "--bootstrap", "200", "--no-progress"]) == 0
    return html


def test_report_in_headless_chromium(report, tmp_path):
    import json

    from matplotlib.image import imread

    run = open_page(CHROMIUM, str(report), CHECK)
    assert run.errors == []
    assert all(u.startswith(("data:", "file:")) for u in run.requests), run.requests
    v = json.loads(run.value)
    assert {"run-table", "status-table", "top-table", "gene-table", "metrics-table"} <= set(v["tables"])
    assert v["rows"]["top-table"] == 51 and v["rows"]["metrics-table"] == 3  # header + 50; header + 2 scores
    assert v["hist"] == 2 and v["curves"] == 2 and v["images"] == v["decoded"] == 4
    assert v["sortedDesc"]
    shot = tmp_path / "report.png"
    shot.write_bytes(run.screenshot)
    img = imread(io.BytesIO(run.screenshot))
    assert img.shape[0] > 1500 and img.shape[1] >= 1200
    ink = (img[..., :3] < 0.9).any(axis=-1).mean()  # share of non-white pixels
    assert 0.02 < ink < 0.6 and len(np.unique(img[..., :3].reshape(-1, 3)[::97], axis=0)) > 20
