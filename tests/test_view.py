"""`edgec view`: the page's embedded graphs, its bytes, its overlays and errors, and (in chromium,
through playwright) what it draws: a box per node, a fused node's body on click, search."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgec.text import parse_ir
from edgec.view import render_html

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"

IR = r'''graph @main(%x: f32[1,4,4,2], %y: f32[2]) -> (%out: f32[1,4,4,2]) {
  %c0 = const f32[2,1,1,2] [1.0,0.0,0.0,1.0]
  %c1 = const f32[2] [0.0,0.0]
  %0 = conv(%x, %c0, %c1) {activation="", activation_params=[], dilations=[1,1], group=1, layout="NHWC", pads=[0,0,0,0], strides=[1,1]} : f32[1,4,4,2]  @"conv_a"
  %1 = fused(%0, %c0, %c1, %x) {body="%4 = conv(%0, %1, %2) {activation=\"\", activation_params=[], dilations=[1,1], group=1, layout=\"NHWC\", pads=[0,0,0,0], strides=[1,1]}; %5 = add(%3, %4)"} : f32[1,4,4,2]  @"conv_b","add_b"
  %2 = fused_elementwise(%1, %y) {body="%2 = mul(%0, %1); %3 = relu(%2)"} : f32[1,4,4,2]  @"mul_c","relu_c"
  %3 = relu(%2) : f32[1,4,4,2]  @"relu_d"
  return %3
}
'''


def edgec(*args):
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def embedded(html):
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S)
                      .group(1).replace("<\\/", "</"))


@pytest.fixture
def eir(tmp_path):
    path = tmp_path / "g.eir"
    path.write_text(IR)
    return path


def test_page_embeds_every_node_and_is_deterministic(eir, tmp_path):
    r = edgec("view", eir, "-o", tmp_path / "a.html")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'a.html'}: 4 nodes\n"
    assert edgec("view", eir, "-o", tmp_path / "b.html").returncode == 0
    html = (tmp_path / "a.html").read_text()
    assert html == (tmp_path / "b.html").read_text()
    g = embedded(html)["graphs"][0]
    assert [n["id"] for n in g["nodes"]] == ["%0", "%1", "%2", "%3"]
    assert (g["nodes"][0]["kind"], g["nodes"][3]["kind"]) == ("complex", "elementwise")  # conv, relu
    fused = g["nodes"][1]
    assert [s["op"] for s in fused["steps"]] == ["conv", "add"] and fused["origins"] == ["conv_b", "add_b"]
    assert [s["op"] for s in g["nodes"][2]["steps"]] == ["mul", "relu"]
    assert g["nodes"][2]["inputs"] == [["%1", "%1", "f32[1,4,4,2]"], ["%y", "%y", "f32[2]"]]
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    assert "dagre" in html and "sourceMappingURL" not in html


def test_dump_dir_embeds_each_pass(eir, tmp_path):
    dumps = tmp_path / "dumps"
    r = edgec("opt", eir, "--passes", "dce", "--dump-ir", dumps)
    assert r.returncode == 0, r.stderr
    r = edgec("view", dumps, "-o", tmp_path / "v.html")
    assert r.returncode == 0, r.stderr
    graphs = embedded((tmp_path / "v.html").read_text())["graphs"]
    assert [g["title"] for g in graphs] == sorted(p.name for p in dumps.glob("*.eir"))
    assert len(graphs) >= 2


def test_overlays_match_nodes(eir, tmp_path):
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({"kernels": [
        {"name": "k0_conv", "node": "%0", "op": "conv", "origins": ["conv_a"], "cost": 3.0, "share": 0.5},
        {"name": "k1_fused__0", "node": "%1", "op": "fused", "origins": [], "cost": 1.0, "share": 0.25},
        {"name": "k1_fused__1", "node": "%1", "op": "fused", "origins": [], "cost": 1.0, "share": 0.25}]}))
    cmp = tmp_path / "c.json"
    cmp.write_text(json.dumps({"nodes": [{"node": "%2", "op": "fused_elementwise", "origins": [], "max_abs": 0.125,
                                          "max_rel": 0.1, "sqnr_db": 20.0, "within": False, "pass": None}]}))
    r = edgec("view", eir, "-o", tmp_path / "v.html", "--profile", prof, "--compare", cmp)
    assert r.returncode == 0, r.stderr
    data = embedded((tmp_path / "v.html").read_text())
    assert data["profile"] == {"%0": {"share": 0.5, "label": "50.0%"}, "%1": {"share": 0.5, "label": "50.0%"}}
    assert data["compare"] == {"%2": {"within": False, "label": "max_abs 0.125"}}


@pytest.mark.parametrize("content, fragment", [
    ("not json", "not JSON"),
    ('{"rows": []}', 'no "kernels" rows'),
])
def test_bad_overlay_is_a_clean_error(eir, tmp_path, content, fragment):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = edgec("view", eir, "-o", tmp_path / "v.html", "--profile", bad)
    assert r.returncode == 2 and r.stderr.startswith("edgec: error: --profile") and fragment in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "v.html").exists()


def test_overlay_of_another_graph_is_a_clean_error(eir, tmp_path):
    cmp = tmp_path / "c.json"
    cmp.write_text(json.dumps({"nodes": [{"node": n, "within": True, "max_abs": 0.0} for n in ("%2", "%4", "%17")]}))
    r = edgec("view", eir, "-o", tmp_path / "v.html", "--compare", cmp)
    assert r.returncode == 2 and f"--compare {cmp} names node %4, which the graph (4 nodes) does not have (and 1 more)" \
        in r.stderr, r.stderr
    assert not (tmp_path / "v.html").exists()


def test_empty_dump_dir_is_a_clean_error(tmp_path):
    r = edgec("view", tmp_path, "-o", tmp_path / "v.html")
    assert r.returncode == 2 and "no .eir files" in r.stderr, r.stderr


def _browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (tools/setup.sh --test installs chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is missing (pip install playwright)")
    return sync_api.sync_playwright()


def _open(p, page_path):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append("request " + r.url) if not r.url.startswith("file:") else None)
    page.goto(page_path.as_uri())
    return browser, page, errors


def test_page_draws_expands_and_searches_in_chromium(eir, tmp_path):
    with _browser() as p:
        out = tmp_path / "v.html"
        before = IR.replace('  %3 = relu(%2) : f32[1,4,4,2]  @"relu_d"\n', "").replace("return %3", "return %2")
        out.write_text(render_html([("00-input.eir", parse_ir(before)), ("01-pass.eir", parse_ir(IR))]))
        browser, page, errors = _open(p, out)
        try:
            assert page.locator(".node").count() == 4
            assert page.locator(".step").count() == 0
            assert page.locator('.node[data-node="%0"] text').first.text_content() == "%0 conv"
            page.locator('.node[data-node="%1"]').click()
            assert page.locator(".step").count() == 2  # conv, add
            assert page.locator(".node").count() == 3
            assert "conv_b" in page.locator("#info").text_content()
            assert page.locator(".step text").first.text_content() == "%1[0] %4 = conv"
            page.locator('.node[data-node="%2"]').click()
            assert page.locator(".step").count() == 4  # and mul, relu
            page.fill("#search", "relu_d")
            assert page.locator(".hit").count() == 1
            assert page.locator(".hit").get_attribute("data-node") == "%3"
            assert page.locator("#count").text_content() == "1 match"
            page.select_option("#pass", "0")  # the first dump: no relu_d
            assert page.locator(".node").count() == 3 and page.locator(".step").count() == 0
            page.screenshot(path=str(tmp_path / "view.png"))
            assert errors == []
        finally:
            browser.close()


def test_mobilenetv2_page_in_chromium(tmp_path):
    """The small MobileNetV2 at -O2: every node drawn; screenshot kept for a look."""
    with _browser() as p:
        r = subprocess.run([sys.executable, str(ROOT / "tools/make_models.py"), "--small", "--out", str(tmp_path),
                            "mobilenetv2"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = tmp_path / "mnv2.html"
        r = edgec("view", tmp_path / "mobilenetv2.onnx", "-O2", "--target", "host", "-o", out)
        assert r.returncode == 0, r.stderr
        nodes = len(embedded(out.read_text())["graphs"][0]["nodes"])
        assert r.stdout == f"{out}: {nodes} nodes\n"
        browser, page, errors = _open(p, out)
        try:
            assert page.locator(".node").count() == nodes
            page.locator('.node[data-node^="%"]', has_text="fused").first.click()
            assert page.locator(".step").count() == 2
            shot = tmp_path / "mobilenetv2.png"
            page.screenshot(path=str(shot))
            print(f"screenshot: {shot}")
            assert errors == []
        finally:
            browser.close()
