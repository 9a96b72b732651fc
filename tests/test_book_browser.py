"""The rendered book in a real browser (headless Chromium, Debian packages chromium + chromium-driver).

Which book: ``$SSLTUTOR_BOOK_HTML`` (a built ``_build/html``: CI runs ``make book`` first and points here), else a
preview built now with ``ssltutor book --from <smoke batch> --preset smoke`` into a temp folder (the paper chapters
show their CIFAR-10 smoke run, the others run at smoke): the same pages, figures and links in a few minutes.

Each page is served over HTTP (as a host would; file:// blocks MathJax's fonts) and loaded by ``chromium --headless
--dump-dom`` after 5 s of virtual time, so the DOM is the one MathJax and the theme's scripts produced. Per page:
it loads, notebook chapters have figures and a Colab button, no traceback / error / stderr output, math is typeset
(mjx-container, no TeX errors), no uncaught JavaScript error, every internal link and anchor resolves; a screenshot
goes to ``_build/screenshots/``.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml
from notebook_runs import ROOT, smoke_batch

from ssltutor.book import build_book, read_config

SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                  "--disable-sync", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                  "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--window-size=1280,2000"]
# sphinx-thebe 0.3.1 (pinned by jupyter-book 1.x) adds its config <script> twice: a harmless redeclaration error.
KNOWN_JS_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


def toc_pages() -> list[str]:
    """Every page of _toc.yml as a path without suffix (read without checking files: a missing one must fail)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", toc.get("chapters", [])))
    return pages


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise FileNotFoundError("no chromium on PATH: apt-get install chromium chromium-driver (.ci/run does)")
    return exe


@pytest.fixture(scope="module")
def book_html(tmp_path_factory, shared_data) -> Path:
    given = os.environ.get("SSLTUTOR_BOOK_HTML")
    if given:
        html = Path(given).resolve()
        assert (html / "index.html").is_file(), f"SSLTUTOR_BOOK_HTML={given} holds no index.html"
        return html
    batch, _ = smoke_batch(tmp_path_factory, shared_data)
    index = build_book(ROOT, from_run=batch, dataset="cifar10", preset="smoke",
                       output=tmp_path_factory.mktemp("book"), log=lambda msg: None)
    return index.parent


@pytest.fixture(scope="module")
def server(book_html):
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(book_html))
    handler.log_message = lambda *args: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class DomSummary(HTMLParser):
    """What the checks need from a page: ids, links, images, MathJax nodes, error-like outputs, cell classes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links, self.images, self.cells = set(), [], [], []
        self.counts = {"mjx-container": 0, "mjx-merror": 0, "math": 0}  # math: elements of class "math" (TeX)
        self.error_outputs: list[str] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href") is not None:
            self.links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag in ("mjx-container", "mjx-merror"):  # not <math>: MathJax adds one (assistive MathML) per formula
            self.counts[tag] += 1
        if "math" in classes:
            self.counts["math"] += 1
        if "cell" in classes:
            self.cells.append(classes)
        if any(c in ("traceback", "stderr", "error") for c in classes) and (
                "output" in classes or "cell_output" in classes):
            self.error_outputs.append(" ".join(classes))
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        self.text.append(data)

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False


@functools.lru_cache(maxsize=None)
def static_ids(path: Path) -> frozenset:
    parser = DomSummary()
    parser.feed(path.read_text(errors="replace"))
    return frozenset(parser.ids)


def load(url: str, screenshot: Path) -> tuple[str, str]:
    """The page's DOM after 5 s of virtual time, and Chromium's log (console messages); writes a screenshot."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--screenshot={screenshot}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium failed on {url}:\n{proc.stderr[-3000:]}"
    return proc.stdout, proc.stderr


def test_index_redirects_to_the_first_page(book_html):
    first = toc_pages()[0]
    assert f"{Path(first).name}.html" in (book_html / "index.html").read_text()


@pytest.mark.parametrize("page", toc_pages())
def test_page_in_browser(page, book_html, server):
    html_file = book_html / f"{page}.html"
    assert html_file.is_file(), f"{page} is in _toc.yml but the book has no {page}.html"
    shot = SCREENSHOTS / f"{page.replace('/', '__')}.png"
    dom, log = load(urljoin(server, f"{page}.html"), shot)
    summary = DomSummary()
    summary.feed(dom)
    text = "".join(summary.text)
    is_notebook = (ROOT / f"{page}.ipynb").is_file()

    assert summary.title.strip() and "main-content" in summary.ids, f"{page} did not render the book layout"
    assert shot.is_file() and shot.stat().st_size > 10_000, "no screenshot"

    # No error output anywhere: tracebacks, error outputs, stderr.
    assert "Traceback (most recent call last)" not in text, f"{page} shows a traceback"
    assert not summary.error_outputs, f"{page} shows error output: {summary.error_outputs[:3]}"
    js_errors = [line for line in log.splitlines()
                 if "CONSOLE" in line and "Uncaught" in line and not any(k in line for k in KNOWN_JS_ERRORS)]
    assert not js_errors, f"JavaScript errors on {page}: {js_errors[:3]}"

    # Math is typeset by the local MathJax, not left as TeX.
    static = html_file.read_text()
    assert "https://cdn.jsdelivr.net/npm/mathjax" not in static, "MathJax must come from _static, not a CDN"
    if summary.counts["math"]:
        assert summary.counts["mjx-container"] >= summary.counts["math"], (
            f"{page}: {summary.counts['math']} math elements but {summary.counts['mjx-container']} typeset")
        assert summary.counts["mjx-merror"] == 0, f"{page}: MathJax reports TeX errors"

    if is_notebook:
        figures = [src for src in summary.images if "_images/" in src or src.startswith("data:image")]
        assert figures, f"notebook chapter {page} has no figures"
        config = read_config(ROOT)
        repo = urlsplit(config["repository"]["url"]).path.strip("/")
        colab = (f"{config['launch_buttons']['colab_url']}/github/{repo}/blob/{config['repository']['branch']}/"
                 f"{page}.ipynb")
        assert colab in summary.links, f"{page} has no Colab launch button to {colab}"
        injected = [c for c in summary.cells if "tag_injected-parameters" in c]
        assert all("tag_hide-cell" in c for c in injected), "papermill's injected-parameters cell must be hidden"

    # Every internal link resolves: the file exists and so does the anchor.
    broken = []
    for href in summary.links:
        target = urlsplit(urljoin(urljoin(server, f"{page}.html"), href))
        if not target.geturl().startswith(server) or href.startswith(("mailto:", "javascript:")):
            continue
        path = book_html / unquote(target.path).lstrip("/")
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            broken.append(href)
        elif target.fragment and path.suffix == ".html":
            ids = summary.ids if path == html_file else static_ids(path)
            if unquote(target.fragment) not in ids:
                broken.append(href)
    assert not broken, f"{page}: broken internal links {sorted(set(broken))[:10]}"


def test_book_has_math_for_mathjax_to_typeset(book_html):
    """The per-page check above proves typesetting only where there is math: make sure some page has it."""
    with_math = [p for p in toc_pages() if (book_html / f"{p}.html").is_file()
                 and 'class="math notranslate' in (book_html / f"{p}.html").read_text()]
    assert with_math, "no page of the book contains math"
