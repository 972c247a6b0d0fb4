"""report.html in a real browser: Debian's headless chromium runs the page's scripts.

The DOM is read back with ``--dump-dom`` after a virtual-time budget (one row label per
client process, the anomaly anchor on an invalid run, the canvas drew calls, a hover over
the failing op shows its details), and a ``--screenshot`` is decoded here (a small PNG
reader: zlib plus the five scanline filters) to check it is not blank and that the
timeline's outcome colours and the failing op's red outline were painted.

Skipped when chromium is absent, unless CI=true (then it fails).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kvcheck.checker.history import Op
from kvcheck.checker.report import write_report

pytestmark = pytest.mark.chromium
MS = 1_000_000
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed, and CI=true requires the browser tests")
        pytest.skip("chromium is not installed (apt install chromium)")
    return exe


def run_chromium(tmp_path: Path, page: Path, *args: str, budget_ms: int = 5000) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    proc = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def dump_dom(tmp_path: Path, page: Path) -> str:
    return run_chromium(tmp_path, page, "--dump-dom")


# ---- histories ----------------------------------------------------------------------------


def history(n_procs: int, rounds: int, *, stale_read: bool) -> tuple[list[Op], dict[str, Any]]:
    """``rounds`` rounds of every process writing then reading; a partition in the middle;
    with ``stale_read`` one read near the end returns an old value and the results say so."""
    ops: list[Op] = []
    t = 0

    def add(p: Any, type_: str, f: str, value: Any) -> Op:
        nonlocal t
        t += 150_000
        op = Op(type=type_, f=f, value=value, process=p, time=t, index=len(ops), key="r")
        if p == "nemesis":
            op.key = None
        ops.append(op)
        return op

    last = 0
    failing = previous = None
    minimal: list[Op] = []
    for r in range(rounds):
        if r == rounds // 3:
            add("nemesis", "info", "start-partition", None)
            add("nemesis", "info", "start-partition", "n1 n2 | n3 n4 n5")
        if r == 2 * rounds // 3:
            add("nemesis", "info", "stop-partition", None)
            add("nemesis", "info", "stop-partition", "healed")
        for p in range(n_procs):
            v = r * n_procs + p + 1
            w0 = add(p, "invoke", "write", v)
            w1 = add(p, "ok" if (r + p) % 7 else "fail", "write", v)
            if w1.type == "ok":
                last = v
                previous = w1
                minimal[:] = [w0, w1]
        for p in range(n_procs):
            r0 = add(p, "invoke", "read", None)
            stale = stale_read and r == rounds - 1 and p == n_procs - 1
            r1 = add(p, "ok", "read", last - 1 if stale else last)
            if stale:
                failing = r1
                minimal += [r0, r1]
    # one info op and one never-completed op at the end
    add(0, "invoke", "write", -1)
    add(0, "info", "write", -1)
    add(1, "invoke", "read", None)

    def d(op: Op) -> dict[str, Any]:
        return {**op.to_dict(), "index": op.id}

    if not stale_read:
        return ops, {"valid": True, "checkers": {"linearizable": {"valid": True, "model": "cas-register",
                                                                  "check_seconds": 0.2, "keys": {"r": {"valid": True}}}}}
    assert failing is not None and previous is not None
    res = {"valid": False, "checkers": {"linearizable": {
        "valid": False, "model": "cas-register", "check_seconds": 0.3, "keys": {"r": {
            "valid": False, "op": d(failing), "previous_ok": d(previous),
            "final_paths": [[{"op": d(previous), "model": f"register {last}"},
                             {"op": d(failing), "model": f"can't read {last - 1} from register {last}"}]],
            "minimal_history": [d(o) for o in minimal]}}}}}
    return ops, res


# ---- PNG ----------------------------------------------------------------------------------


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes) of an 8-bit RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), f"unsupported PNG: depth {depth} colour {colour}"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ftype == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3))
        prev = line
    return width, height, rows


def colours(rows: list[bytes]) -> Counter[tuple[int, int, int]]:
    count: Counter[tuple[int, int, int]] = Counter()
    for line in rows:
        for i in range(0, len(line), 3):
            count[(line[i], line[i + 1], line[i + 2])] += 1
    return count


# ---- tests --------------------------------------------------------------------------------


def test_valid_report_one_row_per_process_and_no_anomaly(tmp_path: Path) -> None:
    ops, res = history(5, 6, stale_read=False)
    page = write_report(ops, res, tmp_path / "report.html", title="valid run")
    dom = dump_dom(tmp_path, page)
    assert 'data-ready="1"' in dom, "the page's script did not run to the first draw"
    processes = sorted({op.process for op in ops if op.process != "nemesis"})
    labels = re.findall(r'<div class="row-label[^"]*" data-process="([^"]+)"', dom)
    assert labels == [str(p) for p in processes]
    assert 'id="anomaly"' not in dom
    drawn = re.search(r'data-drawn-calls="(\d+)"', dom)
    assert drawn is not None and int(drawn.group(1)) > 0


def test_invalid_report_anchor_and_hover_details(tmp_path: Path) -> None:
    ops, res = history(4, 6, stale_read=True)
    page = write_report(ops, res, tmp_path / "report.html", title="stale read")
    failing_id = res["checkers"]["linearizable"]["keys"]["r"]["op"]["index"]
    # Drive the page like a person: show the anomaly, then hover over the failing op.
    probe = f"""<script>
(function () {{
  var R = window.kvcheckReport;
  var canvas = document.getElementById("timeline-canvas");
  var rect = canvas.getBoundingClientRect();
  var tip = document.getElementById("tooltip");
  // first the fault lane, in the whole-history view: the partition's band
  var band = JSON.parse(document.getElementById("kvcheck-data").textContent).timeline.faults[0];
  var bx = rect.left + (R.toPx(band.s) + R.toPx(band.e)) / 2;
  canvas.dispatchEvent(new MouseEvent("mousemove", {{clientX: bx, clientY: rect.top + 20 + 7, bubbles: true}}));
  document.body.dataset.faultTip = tip.hidden ? "hidden" : tip.textContent;
  R.showAnomaly(); R.redraw();
  var c = R.callOfOp({failing_id});
  var x = rect.left + Math.max(2, R.toPx(R.start(c)) + 2), y = rect.top + R.rowY(R.rowOf(c));
  canvas.dispatchEvent(new MouseEvent("mousemove", {{clientX: x, clientY: y, bubbles: true}}));
  document.body.dataset.tip = tip.hidden ? "hidden" : tip.textContent;
}})();
</script></body>"""
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", probe, 1))
    dom = dump_dom(tmp_path, probed)
    assert 'data-ready="1"' in dom
    assert re.search(r'<section id="anomaly"', dom)
    assert re.search(r'<a id="jump-to-anomaly" href="#anomaly"', dom)
    labels = re.findall(r'class="row-label[^"]*"', dom)
    assert len(labels) == 4
    assert len(re.findall(r'class="row-label has-anomaly"', dom)) == 1
    tip = re.search(r'data-tip="([^"]*)"', dom)
    assert tip is not None, dom[-2000:]
    text = tip.group(1)
    assert text.startswith("cannot be linearized")
    assert f"→ #{failing_id}" in text and "f: read" in text and "outcome: ok" in text
    fault_tip = re.search(r'data-fault-tip="([^"]*)"', dom)
    assert fault_tip is not None
    assert fault_tip.group(1).startswith("fault: partition") and "n1 n2 | n3 n4 n5" in fault_tip.group(1)


def test_screenshot_is_not_blank_and_shows_the_timeline(tmp_path: Path) -> None:
    """The page as opened (whole history in view): not blank, and inside the timeline
    canvas (located from the DOM, so the legend's and tables' swatches do not count) the
    ok and fail colours and the failing op's red outline were painted."""
    ops, res = history(6, 8, stale_read=True)
    page = write_report(ops, res, tmp_path / "report.html", title="screenshot")
    page.write_text(page.read_text().replace("</body>", """<script>
var r = document.getElementById("timeline-canvas").getBoundingClientRect();
document.body.dataset.canvasRect = [r.left, r.top, r.width, r.height].map(Math.round).join(",");
</script></body>""", 1))
    size = "--window-size=1100,900"
    dom = run_chromium(tmp_path, page, "--dump-dom", size)
    m = re.search(r'data-canvas-rect="(\d+),(\d+),(\d+),(\d+)"', dom)
    assert m is not None
    left, top, cw, ch = (int(g) for g in m.groups())
    assert top + ch <= 900, "the timeline is below the fold"
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path, page, f"--screenshot={shot}", size)
    width, height, rows = read_png(shot)
    assert (width, height) == (1100, 900)
    count = colours(rows)
    total = width * height
    top_colour, top_n = count.most_common(1)[0]
    assert top_n < 0.95 * total, f"screenshot is {top_n / total:.0%} one colour {top_colour}"
    assert len(count) > 50
    inside = colours([line[left * 3 : (left + cw) * 3] for line in rows[top : top + ch]])
    ok_green, failing_red, fail_pink = (0x9B, 0xE2, 0x9B), (0xD0, 0x00, 0x00), (0xF4, 0xA8, 0xA8)
    assert inside[ok_green] > 500, "no ok boxes painted"
    assert inside[fail_pink] > 20, "no fail boxes painted"
    assert inside[failing_red] > 20, "the failing op is not outlined"
    outside_canvas = colours([line[: left * 3] for line in rows[top : top + ch]])
    assert len(outside_canvas) > 3, "no row labels beside the canvas"


def test_large_history_renders_and_stays_linear(tmp_path: Path) -> None:
    """A bounded version of the 100k-op case: 20,000 events in 10 processes."""
    ops, res = history(10, 1000, stale_read=True)
    assert len(ops) > 20_000
    page = write_report(ops, res, tmp_path / "report.html", title="large")
    size = page.stat().st_size
    assert size < 60 * len(ops), f"{size / len(ops):.1f} bytes/op"
    dom = dump_dom(tmp_path, page)
    assert 'data-ready="1"' in dom
    assert len(re.findall(r'class="row-label', dom)) == 10
    drawn = re.search(r'data-drawn-calls="(\d+)"', dom)
    assert drawn is not None
    # zoomed out, sub-pixel calls merge per pixel column: bounded by rows x canvas width
    calls = sum(1 for op in ops if op.type == "invoke")
    assert 0 < int(drawn.group(1)) < calls


def test_scroll_and_zoom_with_many_processes(tmp_path: Path) -> None:
    """60 processes overflow the viewport: the wheel scrolls rows, ctrl+wheel zooms in
    around the pointer, the fit button restores the whole history; labels follow."""
    ops, res = history(60, 3, stale_read=False)
    page = write_report(ops, res, tmp_path / "report.html", title="many")
    probe = """<script>
(function () {
  var R = window.kvcheckReport, canvas = document.getElementById("timeline-canvas");
  var rect = canvas.getBoundingClientRect(), out = {};
  function wheel(opts) {
    canvas.dispatchEvent(new WheelEvent("wheel", Object.assign({clientX: rect.left + rect.width / 2,
      clientY: rect.top + rect.height / 2, bubbles: true, cancelable: true}, opts)));
  }
  out.span0 = R.view.x1 - R.view.x0;
  wheel({deltaY: 200}); out.y1 = R.view.y;
  wheel({deltaY: -100, ctrlKey: true}); out.span1 = R.view.x1 - R.view.x0;
  wheel({deltaY: 100, shiftKey: true}); out.shifted = R.view.x0;
  R.redraw();
  out.labelShift = document.getElementById("labels-inner").style.transform;
  document.getElementById("zoom-fit").click(); out.span2 = R.view.x1 - R.view.x0; out.y2 = R.view.y;
  document.body.dataset.probe = JSON.stringify(out);
})();
</script></body>"""
    page.write_text(page.read_text().replace("</body>", probe, 1))
    dom = dump_dom(tmp_path, page)
    m = re.search(r'data-probe="([^"]*)"', dom)
    assert m is not None, dom[-2000:]
    out = json.loads(html.unescape(m.group(1)))
    assert len(re.findall(r'class="row-label', dom)) == 60
    assert out["y1"] == 200
    assert out["labelShift"] == "translateY(-200px)"
    assert out["span1"] < out["span0"] * 0.9
    assert out["span2"] == pytest.approx(out["span0"]) and out["y2"] == 0


def test_empty_history_renders(tmp_path: Path) -> None:
    page = write_report([], {"valid": True, "checkers": {"linearizable": {"valid": True}}},
                        tmp_path / "report.html", title="empty")
    dom = dump_dom(tmp_path, page)
    assert 'data-ready="1"' in dom and 'id="no-calls"' in dom
    assert 'data-rows="0"' in dom


def test_keyed_history_has_a_key_filter_set_by_the_anomaly(tmp_path: Path) -> None:
    ops, res = history(3, 4, stale_read=True)
    for op in ops:
        if op.process != "nemesis":
            op.key = f"k{op.process}"
    key_res = res["checkers"]["linearizable"]["keys"].pop("r")
    failing_key = ops[key_res["op"]["index"]].key
    res["checkers"]["linearizable"]["keys"] = {"k0": {"valid": True}, "k1": {"valid": True}, failing_key: key_res}
    page = write_report(ops, res, tmp_path / "report.html", title="kv")
    # Following "Jump to the anomaly" selects the failing key and zooms the timeline in; the
    # probe copies the select's value and the view's span into the DOM.
    page.write_text(page.read_text().replace(
        "</body>", "<script>var R = window.kvcheckReport, span0 = R.view.x1 - R.view.x0;"
        "document.getElementById('jump-to-anomaly').click();"
        "document.body.dataset.zoomed = String(R.view.x1 - R.view.x0 < span0 / 2);"
        "document.body.dataset.key = document.getElementById('key-filter').value;</script></body>", 1))
    dom = dump_dom(tmp_path, page)
    select = re.search(r'<select id="key-filter">(.*?)</select>', dom, re.S)
    assert select is not None
    assert re.findall(r"<option[^>]*>([^<]*)</option>", select.group(1)) == ["all keys", "key k0", "key k1", "key k2"]
    assert f'data-key="{["k0", "k1", "k2"].index(failing_key)}"' in dom
    assert 'data-zoomed="true"' in dom


@pytest.mark.slow
def test_hundred_thousand_ops_render(tmp_path: Path) -> None:
    ops, res = history(10, 5000, stale_read=True)
    assert len(ops) > 100_000
    page = write_report(ops, res, tmp_path / "report.html", title="100k")
    assert page.stat().st_size < 40 * len(ops)
    dom = dump_dom(tmp_path, page)
    assert 'data-ready="1"' in dom
    assert len(re.findall(r'class="row-label', dom)) == 10
    assert 'id="anomaly"' in dom
