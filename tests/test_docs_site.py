"""The documentation site: the API reference lists every public name, and the built pages
render in a real browser.

The browser tests need a built site and run only when FASTNLL_DOCS_HTML names its directory
(`.ci/run` builds it with `sphinx-build -W -b html docs docs/_build/html` and sets it).  They
serve the directory over HTTP on a local port, open the pages in headless Chromium (Debian's
`chromium`), read the DOM after the pages' scripts ran, and fail on any request the server
could not answer: a missing stylesheet, script, image or search index.  With
FASTNLL_DOCS_SCREENSHOTS set to a directory, each page is also saved there as a PNG.
"""
import functools
import html.parser
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
API_PAGE = os.path.join(HERE, "..", "docs", "api.rst")
SITE = os.environ.get("FASTNLL_DOCS_HTML")
SHOTS = os.environ.get("FASTNLL_DOCS_SCREENSHOTS")


def _api_entries():
    """{module: names} listed under each `.. currentmodule::` of docs/api.rst."""
    entries, module = {}, None
    with open(API_PAGE, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\.\. currentmodule:: (\S+)", line)
            if m:
                module = m.group(1)
            elif re.match(r"   [a-z_]+$", line.rstrip("\n")):
                entries.setdefault(module, set()).add(line.strip())
    return entries


@pytest.mark.skipif(not os.path.exists(API_PAGE), reason="no docs/ beside the tests")
@pytest.mark.parametrize("modname", ["fastnll", "fastnll.torch", "fastnll.dask"])
def test_api_reference_lists_every_public_name(modname):
    if modname == "fastnll.torch":
        pytest.importorskip("torch")
    if modname == "fastnll.dask":
        pytest.importorskip("dask.array")
    module = __import__(modname, fromlist=["__all__"])
    public = {n for n in module.__all__ if callable(getattr(module, n))}
    listed = _api_entries().get(modname, set())
    assert public == listed, (f"docs/api.rst lists {sorted(listed - public)} that {modname} does "
                              f"not export, and misses {sorted(public - listed)}")


# --- the built site in Chromium ---

needs_site = pytest.mark.skipif(
    not SITE, reason="set FASTNLL_DOCS_HTML to a built site (docs/_build/html) to check it")


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    # The site was built to be checked: a missing browser is a failure, not a skip.
    pytest.fail("FASTNLL_DOCS_HTML is set but no chromium is installed "
                "(Debian: apt-get install chromium)")


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        self.server.requests.append((urllib.parse.urlsplit(self.path).path, int(code)))

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server():
    assert os.path.isfile(os.path.join(SITE, "index.html")), f"no index.html in {SITE}"
    handler = functools.partial(_Handler, directory=SITE)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _open(server, page, shot=None):
    """The DOM of `page` after its scripts ran, and the requests it made."""
    browser = _chromium()
    url = f"http://127.0.0.1:{server.server_port}/{page}"
    before = len(server.requests)
    with tempfile.TemporaryDirectory() as profile:
        common = [browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                  f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
        dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        if SHOTS and shot:
            os.makedirs(SHOTS, exist_ok=True)
            subprocess.run(common + ["--hide-scrollbars", "--window-size=1400,1000",
                                     f"--screenshot={os.path.join(SHOTS, shot)}", url],
                           capture_output=True, timeout=120, check=True)
    return dom, server.requests[before:]


class _Links(html.parser.HTMLParser):
    """The link targets inside the elements that carry a given class, and the page's h1."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self, container_class):
        super().__init__()
        self.container_class = container_class
        self.stack = []             # for each open element: is it (or an ancestor) a container
        self.links = []
        self.h1 = ""
        self.in_h1 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        inside = (bool(self.stack) and self.stack[-1]) or \
            self.container_class in (attrs.get("class") or "").split()
        if tag == "a" and inside and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "h1":
            self.in_h1 = True
        if tag not in self.VOID:
            self.stack.append(inside)

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()
        if tag == "h1":
            self.in_h1 = False

    def handle_data(self, data):
        if self.in_h1:
            self.h1 += data


def _links(dom, container_class):
    parser = _Links(container_class)
    parser.feed(dom)
    return parser


def _assert_served(requests, page):
    assert requests, f"{page}: the browser requested nothing"
    missing = [(path, code) for path, code in requests if code >= 400]
    assert not missing, f"{page}: resources the site does not have: {missing}"
    kinds = {os.path.splitext(path)[1] for path, _ in requests}
    assert {".css", ".js"} <= kinds, f"{page}: no stylesheet or script loaded: {requests}"


def _targets(hrefs):
    return {urllib.parse.urlsplit(h).path.rsplit("/", 1)[-1] for h in hrefs}


@needs_site
def test_index_page_renders_with_navigation(server):
    dom, requests = _open(server, "index.html", shot="index.png")
    _assert_served(requests, "index.html")
    header = _links(dom, "bd-header")
    assert header.h1.strip().startswith("fastnll"), header.h1
    # the top navigation bar reaches every part of the site
    assert {"index.html", "api.html", "benchmarks.html", "development.html"} <= \
        _targets(header.links), header.links
    assert "changelog.html" in _targets(_links(dom, "bd-main").links)


@needs_site
def test_guide_page_renders_with_sidebar_and_toc(server):
    page = "user_guide/lm_heads.html"
    dom, requests = _open(server, page, shot="guide_lm_heads.png")
    _assert_served(requests, page)
    sidebar = _links(dom, "bd-docs-nav")
    assert "Language-model heads" in sidebar.h1 or "Language-model heads" in dom
    assert {"functions.html", "torch.html", "dask.html", "threads.html"} <= \
        _targets(sidebar.links), sidebar.links
    toc = _links(dom, "bd-sidebar-secondary")
    assert {"#how-it-works", "#speed-and-memory"} <= set(toc.links), toc.links


@needs_site
def test_api_page_renders_the_docstring(server):
    page = "generated/fastnll.cross_entropy.html"
    dom, requests = _open(server, page, shot="api_cross_entropy.png")
    _assert_served(requests, page)
    main = _links(dom, "bd-article")
    assert "fastnll.cross_entropy" in main.h1, main.h1
    for section in ("Parameters", "Returns", "Raises", "Examples"):
        assert re.search(rf">\s*{section}\s*<", dom), f"no {section} section on {page}"
    sidebar = _links(dom, "bd-docs-nav")
    assert {"fastnll.logsumexp.html", "fastnll.linear_cross_entropy.html",
            "fastnll.torch.cross_entropy.html", "fastnll.dask.from_npy.html"} <= \
        _targets(sidebar.links), sidebar.links


@needs_site
def test_search_finds_a_function(server):
    page = "search.html?q=linear_cross_entropy"
    dom, requests = _open(server, page, shot="search.png")
    _assert_served(requests, page)
    assert ("/searchindex.js", 200) in requests, "the search index was not loaded"
    results = _links(dom, "search")
    assert "fastnll.linear_cross_entropy.html" in _targets(results.links), results.links
