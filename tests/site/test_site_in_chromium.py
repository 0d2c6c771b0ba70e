"""The course's website as a reader meets it: every page of build/site/ in headless Chromium.

`make site-test` runs this after `make site` (it is not part of `make test`:
it needs the built site and Chromium). The site is served on loopback; the
browser may reach nothing else (every other host resolves to nothing), so a
page that needs a CDN shows up here as a failed request. For every page:
no console error, no failed request, every <img> drawn (nonzero natural
size), no diagram shown as its source text; every link inside the site
reaches a page (and the anchor on it). Two screenshots are kept in
build/site-screens/ (CI artifacts): the page with a drawn diagram and the
page with a notebook's attached figure.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

from tools.site.build import html_pages

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
SCREENS = ROOT / "build" / "site-screens"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--window-size=1280,1000", "--no-first-run", "--disable-quic", "--hide-scrollbars",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
    "--no-pings", "--disable-domain-reliability",
    # Only loopback exists for this browser: a CDN request fails, and is reported.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# Diagram sources as a reader would see them printed instead of drawn.
RAW_DIAGRAM = re.compile(r"```\s*mermaid|(^|\n)\s*(graph|flowchart)\s+(TD|TB|BT|LR|RL)\b|"
                         r"(^|\n)\s*(sequenceDiagram|classDiagram|stateDiagram|erDiagram|gantt)\b")
LOAD_TIMEOUT = 30

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402  (after the skip above)
from selenium.webdriver.chrome.service import Service  # noqa: E402
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip("needs Debian's chromium and chromium-driver (make site-test installs them)",
                allow_module_level=True)


def site_pages() -> list[str]:
    if not (SITE / "index.html").is_file():
        pytest.fail("build/site/ is not built: run `make site` (make site-test does)")
    return [p.relative_to(SITE).as_posix() for p in html_pages(SITE)]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_Quiet, directory=str(SITE)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def browser():
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(LOAD_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


IMAGES = """
    const images = [...document.images];
    images.forEach(i => { i.loading = 'eager'; });
    return images.map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                             width: i.naturalWidth, height: i.naturalHeight}));"""


def _network_failures(driver, base: str) -> list[str]:
    """Requests that failed, got an HTTP error, or went anywhere but the site."""
    failures, urls = [], {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls[params["requestId"]] = url
            if not url.startswith((base, "data:", "blob:", "about:")):
                failures.append(f"outside the site: {url}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            failures.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            failures.append(f"failed ({params.get('errorText')}): {urls.get(params['requestId'], '?')}")
    return failures


def _wait_for_images(driver) -> list[dict]:
    deadline = time.monotonic() + LOAD_TIMEOUT
    while True:
        images = driver.execute_script(IMAGES)
        if all(i["complete"] for i in images) or time.monotonic() > deadline:
            return images
        time.sleep(0.2)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


@functools.lru_cache(maxsize=None)
def _parsed(page: str) -> _Links:
    parser = _Links()
    parser.feed((SITE / page).read_text(encoding="utf-8"))
    return parser


def test_every_page_loads_cleanly_in_chromium(server, browser):
    pages = site_pages()
    assert len(pages) >= 3 * 2 + 1, f"too few pages: {pages}"
    problems: dict[str, list[str]] = {}
    started = time.monotonic()
    for page in pages:
        browser.get_log("performance")     # drop what the previous page logged
        browser.get_log("browser")
        browser.get(server + page)
        images = _wait_for_images(browser)
        found = [f"console {e['level']}: {e['message']}" for e in browser.get_log("browser")
                 if e["level"] == "SEVERE"]
        found += _network_failures(browser, server)
        found += [f"image not drawn: {i['src']}" for i in images if not i["width"] or not i["height"]]
        text = browser.execute_script("return document.body.innerText")
        raw = RAW_DIAGRAM.search(text)
        if raw:
            found.append(f"diagram shown as source: {raw.group(0).strip()!r}")
        if found:
            problems[page] = found
    seconds = time.monotonic() - started
    print(f"\n{len(pages)} pages opened in Chromium in {seconds:.1f} s")
    assert not problems, "\n".join(f"{page}:\n  " + "\n  ".join(found) for page, found in problems.items())


def test_every_link_inside_the_site_reaches_its_page_and_anchor():
    broken = []
    for page in site_pages():
        for href in _parsed(page).hrefs:
            if urlparse(href).scheme or href.startswith(("//", "mailto:")):
                continue
            url, fragment = urldefrag(href)
            target = unquote(urljoin(page, url)) if url else page
            if target.endswith("/"):
                target += "index.html"
            if not (SITE / target).is_file():
                broken.append(f"{page}: {href} (no {target})")
            elif fragment and target.endswith(".html") and fragment not in _parsed(target).ids:
                broken.append(f"{page}: {href} (no #{fragment} on {target})")
    assert not broken, "\n".join(broken)


def test_every_notebook_page_says_how_to_run_it():
    """Binder and a local JupyterLab, each opening that notebook; and its companion pages."""
    missing = []
    for page in site_pages():
        source = SITE / "_sources" / Path(page).with_suffix(".ipynb")
        if not source.is_file():
            continue
        notebook = Path(page).with_suffix(".ipynb").as_posix()
        html = (SITE / page).read_text(encoding="utf-8")
        launch = re.search(r'class="[^"]*minildr-launch[^"]*".*?</div>\s*</div>', html, re.S)
        if not launch:
            missing.append(f"{page}: no 'Run this notebook' box")
            continue
        hrefs = re.findall(r'href="([^"]+)"', launch.group(0))
        if not any(h.startswith("https://mybinder.org/") and h.endswith(notebook) for h in hrefs):
            missing.append(f"{page}: no Binder link to {notebook}")
        if not any(h.startswith("http://localhost:8888/lab/tree/") and h.endswith(notebook) for h in hrefs):
            missing.append(f"{page}: no JupyterLab link to {notebook}")
    assert not missing, "\n".join(missing)


def test_the_download_button_gives_the_committed_notebook():
    for page in site_pages():
        source = Path(page).with_suffix(".ipynb")
        if (SITE / "_sources" / source).is_file():
            assert (SITE / "_sources" / source).read_bytes() == (ROOT / source).read_bytes(), source
            assert f'href="{"../" * (len(source.parts) - 1)}_sources/{source.as_posix()}"' in \
                (SITE / page).read_text(encoding="utf-8"), f"{page}: no download link"


def _page_with(pattern: str) -> str:
    hits = [p for p in site_pages() if re.search(pattern, (SITE / p).read_text(encoding="utf-8"))]
    assert hits, f"no page has {pattern!r}"
    return hits[0]


@pytest.mark.parametrize("kind, pattern", [
    ("diagram", r'<img[^>]+src="[^"]*/mermaid-[^"]*\.svg"'),         # a mermaid diagram, drawn at build time
    ("attachment", r'<img[^>]+src="[^"]*/attachment-[^"]*"'),        # a notebook cell's attached figure
])
def test_screenshot(server, browser, kind, pattern):
    page = _page_with(pattern)
    browser.set_window_size(1280, 1700)      # room for a whole flowchart
    browser.get(server + page)
    _wait_for_images(browser)
    selector = 'img[src*="/mermaid-"]' if kind == "diagram" else 'img[src*="/attachment-"]'
    size = browser.execute_script(f"""
        const img = document.querySelector('{selector}');
        img.scrollIntoView({{block: 'start'}}); window.scrollBy(0, -70);
        return [img.naturalWidth, img.getBoundingClientRect().width];""")
    assert size[0] > 0 and size[1] > 50, f"{page}: the {kind} is not shown ({size})"
    SCREENS.mkdir(parents=True, exist_ok=True)
    shot = SCREENS / f"{kind}-{Path(page).stem}.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000, f"{shot} looks empty"
    print(f"\nscreenshot: {shot.relative_to(ROOT)}")
