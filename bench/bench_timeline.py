"""
The timeline page with 1,000 nodes and 10,000 schedules in view: loads the
page offline (synthetic data made in the page by its test hook) in headless
Chromium and prints the time of a full draw over a series of pans and zooms
(1 h to 4 weeks), and of a frame while dragging.

Run: .venv/bin/python bench/bench_timeline.py [NODES SCHEDULES]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rest_compat", "ui", "index.html")


def main() -> None:
    nodes, schedules = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (1000, 10000)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,900", "--allow-file-access-from-files"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "chromedriver"))
    try:
        browser.get("file://" + PAGE + "?offline=1")
        load = browser.execute_script(f"""
            const t0 = performance.now();
            marvinTimeline.loadSynthetic({nodes}, {schedules});
            return performance.now() - t0;
        """)
        draws = browser.execute_script("""
            const t = marvinTimeline, s = t.state, times = [];
            const spans = [3600, 6 * 3600, 86400, 7 * 86400, 28 * 86400];
            for (const span of spans) {
              for (let i = 0; i < 20; i++) {
                s.view.span = span;
                s.view.start = Date.now() / 1000 - span / 2 + i * span / 20;
                s.scroll = (i * 397) % (s.rows.length * 22);
                const t0 = performance.now();
                t.draw();
                times.push([span, performance.now() - t0]);
              }
            }
            return times;
        """)
        frames = browser.execute_async_script("""
            const done = arguments[arguments.length - 1], t = marvinTimeline, s = t.state, stamps = [];
            s.view.span = 7 * 86400;
            let n = 0;
            function step(ts) {
              stamps.push(ts);
              s.view.start += 600;
              s.scroll += 11;
              t.draw();
              if (++n < 120) requestAnimationFrame(step); else done(stamps);
            }
            requestAnimationFrame(step);
        """)
    finally:
        browser.quit()
    print(f"timeline: {nodes} nodes, {schedules} schedules")
    print(f"  load (index and first draw): {load:.1f} ms")
    for span in sorted({s for s, _ in draws}):
        times = [ms for s, ms in draws if s == span]
        print(f"  full draw, {span / 3600:>5.0f} h view: median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")
    gaps = [b - a for a, b in zip(frames, frames[1:])]
    print(f"  dragging (pan + scroll every frame): median frame {statistics.median(gaps):.1f} ms, "
          f"max {max(gaps):.1f} ms over {len(gaps)} frames")


if __name__ == "__main__":
    main()
