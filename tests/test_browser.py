"""The built book as readers use it: offline, in a real (headless) Chromium.

Every page of ``_toc.yml`` is served by a local ``http.server`` and opened once
with Playwright driving Debian's ``chromium``; the visit records what the page
requested, logged and rendered, and the tests below check it:

* HTTP 200, no console error, no failed request, no request to another host
  (the site is self-contained: MathJax is vendored, see ``make vendor``);
* every image loaded and described by its alt text, every math element typeset
  by MathJax and no raw ``$``/``\\(`` left in the text;
* the title and the left navigation list every toc page; every internal link
  and anchor of every page reachable from the toc resolves;
* zero serious/critical axe-core violations; search finds chapters; figures
  stay on a light panel in dark mode and visible in print;
* a 1280 × 900 px screenshot of the top of each page under ``_build/screenshots/``.

The browser is not optional: when Chromium cannot start the tests fail.
"""

from __future__ import annotations

import copy
import functools
import html.parser
import http.server
import json
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import nbgrading
import yaml
from conftest import once_per_run

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE = REPO / "_vendor" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "_build" / "screenshots"
BOOK_TITLE = yaml.safe_load((REPO / "_config.yml").read_text())["title"]
WIDTH = 1280

# Same xdist group as tests/test_book.py: one worker builds the book once (the session
# fixture `built` in conftest.py) and runs both files; the browser fixtures are
# session-scoped too, so switching between the two modules does not restart them.
pytestmark = [pytest.mark.book, pytest.mark.xdist_group("book")]


toc_files = nbgrading.toc_files


PAGES = toc_files()
NOTEBOOK_PAGES = [p for p in PAGES if (REPO / f"{p}.ipynb").exists()]
CHAPTERS = [p for p in NOTEBOOK_PAGES if p.startswith("book/")]


# --------------------------------------------------------------------------- server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002  (the base class's name)
        pass


@pytest.fixture(scope="session")
def server(built):
    """``python -m http.server`` on the built site, in a thread → base URL."""
    handler = functools.partial(_QuietHandler, directory=str(built))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium through Playwright (its own browser download is not used)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} not found: `make test` installs it as root (apt-get install -y chromium); "
        "or set CHROMIUM=/path/to/chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


# --------------------------------------------------------------------------- one visit per page

_WAIT_FOR_IMAGES = """async () => {
    const images = Array.from(document.images);
    for (const img of images) img.loading = "eager";
    await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
        img.addEventListener("load", done); img.addEventListener("error", done);
        setTimeout(done, 10000);
    })));
}"""

_WAIT_FOR_MATH = """async () => {
    if (!window.MathJax) return "no MathJax";
    for (let i = 0; i < 200 && !(MathJax.startup && MathJax.startup.promise); i++)
        await new Promise(r => setTimeout(r, 50));
    await MathJax.startup.promise;
    return "typeset";
}"""

_RENDERED = """() => {
    const article = document.querySelector("article.bd-article") || document.querySelector("main");
    const math = Array.from(article.querySelectorAll(".math"));
    const clone = article.cloneNode(true);
    clone.querySelectorAll("pre, code, script, style, mjx-container, .highlight, .cell_output")
        .forEach(e => e.remove());
    const nav = document.querySelector("#bd-docs-nav, nav.bd-docs-nav");
    return {
        title: document.title,
        images: Array.from(document.images).map(i => ({
            src: i.currentSrc || i.src, alt: (i.getAttribute("alt") || "").trim(),
            width: i.naturalWidth, inArticle: article.contains(i)})),
        math: math.length,
        mathTypeset: math.filter(e => e.querySelector("mjx-container")).length,
        mjx: document.querySelectorAll("mjx-container").length,
        text: clone.textContent,
        outputs: Array.from(article.querySelectorAll(".cell_output")).map(o => o.innerText),
        links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
        nav: nav ? Array.from(nav.querySelectorAll("a[href]")).map(a => a.href) : [],
        home: Array.from(document.querySelectorAll(".navbar-brand[href], a.navbar-brand"))
            .map(a => a.href),
    };
}"""

_AXE = """async () => {
    // preload: false: axe would re-fetch @import-ed CSS relative to the page (404s)
    const result = await axe.run(document, {resultTypes: ["violations"], preload: false});
    return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
}"""


def _watch(page, base: str) -> dict:
    """Record console errors, failed requests and (blocked) requests to other hosts."""
    log: dict = {"errors": [], "failed": [], "external": [], "requests": 0}
    page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log["errors"].append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: log["failed"].append(f"{r.url}: {r.failure}"))
    page.on("response", lambda r: log["failed"].append(f"{r.url}: HTTP {r.status}")
            if r.status >= 400 else None)

    def route(route):
        url = route.request.url
        log["requests"] += 1
        if url.startswith(base) or url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:  # never leave the machine: the site must not need it
            log["external"].append(url)
            route.abort()

    page.route("**/*", route)
    return log


@pytest.fixture(scope="session")
def visits(browser, server):
    """Open every toc page once per run at 1280 px → {page: what the browser saw}.

    The first xdist worker that needs it visits the pages and stores the result;
    another worker of the same run reads it (see conftest.once_per_run).
    """
    cache = REPO / "_build" / "browser-visits.json"
    placeholder = "http://local.invalid/"
    with once_per_run("browser-visits") as stamp:
        if stamp.exists() and cache.exists():
            return json.loads(cache.read_text().replace(placeholder, server))
        seen = _visit_every_page(browser, server)
        cache.write_text(json.dumps(seen).replace(server, placeholder))
        stamp.touch()
    return seen


def _visit_every_page(browser, server) -> dict:
    assert AXE.exists(), f"{AXE} is missing: run `make vendor`"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": WIDTH, "height": 900})
    seen = {}
    started = time.perf_counter()
    for name in PAGES:
        page = context.new_page()
        log = _watch(page, server)
        response = page.goto(server + f"{name}.html", wait_until="load")
        page.wait_for_load_state("networkidle")
        page.evaluate(_WAIT_FOR_IMAGES)
        mathjax = page.evaluate(_WAIT_FOR_MATH)
        rendered = page.evaluate(_RENDERED)
        page.screenshot(path=str(SCREENSHOTS / f"{name.replace('/', '__')}.png"))  # the first screen: a whole page took 2-3 s
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(_AXE)
        page.wait_for_load_state("networkidle")  # fonts MathJax asked for, late messages
        page.wait_for_timeout(100)
        seen[name] = dict(status=response.status if response else None, mathjax=mathjax,
                          violations=violations, **rendered,
                          **{key: copy.copy(value) for key, value in log.items()})
        page.close()
    context.close()
    seconds = time.perf_counter() - started
    print(f"\nbrowser: {len(seen)} pages in {seconds:.1f} s; "
          f"{sum(len(v['images']) for v in seen.values())} images, "
          f"{sum(v['math'] for v in seen.values())} math elements, "
          f"{sum(v['mjx'] for v in seen.values())} mjx-container")
    return seen


# --------------------------------------------------------------------------- per page


def test_the_toc_has_chapters_and_exercises():
    assert CHAPTERS, "no chapter notebook in _toc.yml"
    assert any(p.startswith("exercises/") for p in NOTEBOOK_PAGES), "no exercise in _toc.yml"


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_offline_without_errors(visits, page):
    seen = visits[page]
    assert seen["status"] == 200
    assert seen["external"] == [], f"requests outside the site: {seen['external']}"
    assert seen["failed"] == [], f"failed requests: {seen['failed']}"
    assert seen["errors"] == [], f"console errors: {seen['errors']}"


@pytest.mark.parametrize("page", PAGES)
def test_every_image_is_loaded_and_described(visits, page):
    for image in visits[page]["images"]:
        assert image["width"] > 0, f"image not loaded: {image['src']}"
        assert image["alt"], f"image without alt text: {image['src']}"
        if image["inArticle"] and "/_images/" in image["src"]:  # a figure, not an icon
            assert len(image["alt"]) > 20, f"alt text does not describe the figure: {image}"


@pytest.mark.parametrize("page", PAGES)
def test_math_is_typeset(visits, page):
    seen = visits[page]
    assert seen["mathjax"] == "typeset" or seen["math"] == 0, seen["mathjax"]
    assert seen["mathTypeset"] == seen["math"], (
        f"{seen['math'] - seen['mathTypeset']} of {seen['math']} math elements not typeset")
    if page in CHAPTERS:
        assert seen["mjx"] >= 2, "a chapter without typeset math"
    raw = re.findall(r"\\\(|\\\[|\$\$|(?<![\\\w])\$[^$\n]{1,80}\$", seen["text"])
    assert not raw, f"raw TeX left in the text: {raw[:5]}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_cell_outputs_are_readable(visits, page):
    """Keras logs and tables, not progress bars, reprs or tracebacks."""
    outputs = visits[page]["outputs"]
    for text in outputs:
        lines = text.splitlines()
        assert len(lines) <= 60, f"an output of {len(lines)} lines: {text[:300]}"
        for junk in ("━━", "[====", "ETA:", "\r", "<Figure size", "Traceback", "Warning:"):
            assert junk not in text, f"{junk!r} in an output: {text[:300]}"


@pytest.mark.parametrize("page", PAGES)
def test_title_and_navigation_list_every_page(visits, server, page):
    seen = visits[page]
    assert BOOK_TITLE in seen["title"], seen["title"]
    listed = {urllib.parse.urldefrag(href)[0] for href in seen["nav"] + seen["home"]}
    missing = [p for p in PAGES if server + f"{p}.html" not in listed]
    assert not missing, f"the navigation does not list {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_no_serious_accessibility_violation(visits, page):
    serious = [v for v in visits[page]["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, "\n".join(f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}"
                                  for v in serious)


@pytest.mark.parametrize("page", PAGES)
def test_screenshot_at_1280_px(visits, page):
    shot = SCREENSHOTS / f"{page.replace('/', '__')}.png"
    assert shot.stat().st_size > 10_000
    assert int.from_bytes(shot.read_bytes()[16:20], "big") == WIDTH  # PNG IHDR width


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_notebook_pages_have_launch_and_download_buttons(visits, page):
    repo = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
    slug = urllib.parse.urlparse(repo).path.strip("/")
    links = visits[page]["links"]
    assert any(h.startswith(f"https://mybinder.org/v2/gh/{slug}/") and h.endswith(f"{page}.ipynb")
               for h in links), "no Binder button"
    assert any(h.startswith(f"https://colab.research.google.com/github/{slug}/blob/")
               and h.endswith(f"{page}.ipynb") for h in links), "no Colab button"
    assert any(h.endswith(f"_sources/{page}.ipynb") for h in links), "no .ipynb download button"


# --------------------------------------------------------------------------- whole site


class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def test_every_internal_link_and_anchor_resolves(built, visits, server):
    """Crawl every page reachable from the toc; each link → a file, each #anchor → an id."""
    parsed: dict[Path, _Anchors] = {}

    def parse(path: Path) -> _Anchors:
        if path not in parsed:
            parsed[path] = _Anchors()
            parsed[path].feed(path.read_text(encoding="utf-8"))
        return parsed[path]

    links = [(server + f"{p}.html", href) for p in PAGES for href in visits[p]["links"]]
    queue = [built / f"{p}.html" for p in PAGES]
    crawled: set[Path] = set()
    broken = []
    checked = 0
    while queue or links:
        if queue:
            source = queue.pop()
            if source in crawled:
                continue
            crawled.add(source)
            base = server + source.relative_to(built).as_posix()
            links += [(base, href) for href in parse(source).hrefs]
            continue
        base, href = links.pop()
        url = urllib.parse.urljoin(base, href)
        if not url.startswith(server):
            continue  # external links are not requests; launch buttons are checked above
        checked += 1
        address, fragment = urllib.parse.urldefrag(url)
        relative = urllib.parse.unquote(urllib.parse.urlparse(address).path).lstrip("/")
        target = built / relative
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{base}: {href} (no file {relative})")
            continue
        if target.suffix == ".html":
            queue.append(target)
            if fragment and urllib.parse.unquote(fragment) not in parse(target).ids:
                broken.append(f"{base}: {href} (no anchor #{fragment})")
    print(f"\nlinks: {checked} internal links on {len(crawled)} pages checked")
    assert len(crawled) >= len(PAGES)
    assert not broken, "\n".join(sorted(set(broken))[:40])


def test_search_finds_the_chapters(browser, server):
    page = browser.new_page()
    log = _watch(page, server)
    page.goto(server + "search.html?q=learning+rate", wait_until="load")
    page.wait_for_selector("ul.search li", timeout=20_000)
    page.wait_for_load_state("networkidle")
    results = page.eval_on_selector_all("ul.search li a", "links => links.map(a => a.href)")
    page.close()
    assert any("book/schedules.html" in r for r in results), results
    assert log["errors"] == [] and log["failed"] == [] and log["external"] == [], log


@pytest.mark.parametrize("page", CHAPTERS)
def test_dark_mode_and_print_keep_figures_readable(browser, server, page):
    context = browser.new_context(viewport={"width": WIDTH, "height": 900}, color_scheme="dark")
    tab = context.new_page()
    log = _watch(tab, server)
    tab.goto(server + f"{page}.html", wait_until="networkidle")
    tab.evaluate(_WAIT_FOR_IMAGES)
    assert tab.evaluate("document.documentElement.dataset.theme") == "dark"
    backgrounds = tab.evaluate("""() => Array.from(document.querySelectorAll(
        "article img")).map(i => getComputedStyle(i).backgroundColor)""")
    assert backgrounds, "no figure"
    for color in backgrounds:  # a light panel behind each figure, so black axes stay readable
        r, g, b = (int(x) for x in re.findall(r"\d+", color)[:3])
        assert 0.2126 * r + 0.7152 * g + 0.0722 * b > 150, f"figure on a dark background: {color}"
    tab.add_script_tag(path=str(AXE))
    serious = [v for v in tab.evaluate(_AXE) if v["impact"] in ("serious", "critical")]
    assert not serious, f"dark mode: {serious}"
    tab.emulate_media(media="print", color_scheme="light")
    boxes = tab.evaluate("""() => Array.from(document.querySelectorAll("article img")).map(i => {
        const r = i.getBoundingClientRect(); const s = getComputedStyle(i);
        return [r.width, r.height, s.display, s.visibility]; })""")
    for width, height, display, visibility in boxes:
        assert width > 100 and height > 50 and display != "none" and visibility == "visible"
    pdf = tab.pdf(format="A4")
    context.close()
    assert pdf[:4] == b"%PDF" and len(pdf) > 20_000
    assert log["errors"] == [] and log["failed"] == [] and log["external"] == [], log
