"""The course website in a real browser: ``metacourse site`` builds it, headless Chromium reads it.

The site is built once for this module (Jupyter Book 1.0.4 into a temporary folder, from the
notebooks' stored outputs) and served on 127.0.0.1. Chromium then opens every page of the table of
contents and checks that it loads, that every ``<img>`` is there (``naturalWidth > 0``), that every
link to a page, an anchor or a file of the site leads to something that exists, and that the
search page finds "MAML". Requests to other hosts are refused: the site must stand on its own
(MathJax too, when jupyter-server-mathjax is installed; the equations of the MAML lecture are then
checked to be typeset). The counts are printed (``-s``);
a screenshot of the MAML lecture goes beside the other screenshots (``conftest.py``).
Markers: ``browser``.
"""

from __future__ import annotations

import functools
import html.parser
import importlib.util
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

SEARCH_WORD = "MAML"
TABS = 3
"""Pages loaded at once (about twice as fast as one at a time on two cores)."""
SCREENSHOT_PAGE = "lectures/04_maml.ipynb"
BROKEN_AT_BUILD = ("xref_missing", "reference target not found", "image file not readable", "toc.not_included",
                   "document isn't included in any toctree", "undefined label")
"""Sphinx warnings that mean a link or an image of the book leads nowhere."""
FILE_AS_HOST = re.compile(r"\.(md|py|ipynb|json|png|sh)$")
"""A link whose host ends like a file name ("http://design.md") was made from text that is no address."""

# Every image of the page, once each has loaded or failed (scrolled into view first: lazy images).
_IMAGES_JS = """async () => {
  const images = [...document.images];
  for (const img of images) { img.loading = 'eager'; }
  await Promise.all(images.map(img => img.complete ? null :
    new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done);
                          setTimeout(done, 10000); })));
  return images.map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
                             content: !!img.closest('article')}));
}"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request in the test's output
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A page left before all its files arrived (the next page was asked for) is no error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Ids(html.parser.HTMLParser):
    """The ``id`` and ``name`` attributes of a page: the anchors a link may point at."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.ids.update(value for key, value in attrs if key in ("id", "name") and value)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory):
    """The site, built once for the module: a :class:`metacourse.course.site.Book`."""
    if importlib.util.find_spec("jupyter_book") is None:
        reason = 'Jupyter Book is missing: pip install -e ".[site]"'
        if os.environ.get("METACOURSE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"METACOURSE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    from metacourse.course.site import build_site

    built = build_site(Path(__file__).resolve().parents[2], tmp_path_factory.mktemp("site"))
    print(f"\nsite: {len(built.pages)} pages built in {built.seconds:.0f} s, {len(built.warnings)} Sphinx warning(s)")
    return built


@pytest.fixture(scope="module")
def site_url(book):
    """The built site served on 127.0.0.1 (a free port), for as long as the module runs."""
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(book.html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def context(chromium, site_url):
    """A fresh browser context that may only reach the site itself; refused requests are in
    ``context.refused``."""
    browser_context = chromium.new_context(viewport={"width": 1280, "height": 900})
    browser_context.set_default_timeout(120_000)  # two shared cores: a long page may take a while
    browser_context.refused = []

    def local_only(route) -> None:
        if route.request.url.startswith(site_url):
            route.continue_()
        else:
            browser_context.refused.append(route.request.url)
            route.abort()

    browser_context.route("**/*", local_only)
    try:
        yield browser_context
    finally:
        browser_context.close()


@pytest.fixture
def page(context):
    return context.new_page()


def _html_path(page: str) -> str:
    return re.sub(r"\.(ipynb|md)$", ".html", page)


def test_the_build_reports_no_link_or_image_leading_nowhere(book):
    assert not book.problems, "links that lead nowhere (fix them in the pages' sources):\n" + "\n".join(book.problems)
    broken = [w for w in book.warnings if any(sign in w for sign in BROKEN_AT_BUILD)]
    assert not broken, "Sphinx found links or images that lead nowhere:\n" + "\n".join(broken)
    assert (book.source / "_config.yml").read_text().count("execute_notebooks: 'off'") == 1


def _load_all(tabs: list, urls: list[str]) -> Iterator[tuple[int, object]]:
    """Load ``urls`` a few at a time, one per tab (the browser lays out several pages at once);
    yields (index of the URL, its tab) once the page has loaded."""
    for start in range(0, len(urls), len(tabs)):
        batch = list(enumerate(urls[start:start + len(tabs)], start))
        for tab, (_, url) in zip(tabs, batch):
            tab.evaluate("url => { window.location.href = url; }", url)
        for tab, (index, url) in zip(tabs, batch):
            tab.wait_for_url(url)
            tab.wait_for_load_state("load")
            yield index, tab


def test_every_page_loads_with_its_images_and_links(book, site_url, context):
    html_root = book.html
    ids: dict[Path, set[str]] = {}

    def anchors(path: Path) -> set[str]:
        if path not in ids:
            parser = _Ids()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            ids[path] = parser.ids
        return ids[path]

    figures = images = links = external = 0
    failures = [f"{name}: {_html_path(name)} was not built" for name in book.pages
                if not (html_root / _html_path(name)).is_file()]
    tabs = [context.new_page() for _ in range(TABS)]
    for index, tab in _load_all(tabs, [f"{site_url}/{_html_path(name)}" for name in book.pages]):
        name = book.pages[index]
        if tab.locator("article h1").count() < 1:
            failures.append(f"{name}: the page has no title (h1) in its article")
        for image in tab.evaluate(_IMAGES_JS):
            images += 1
            figures += image["content"]
            if not image["ok"]:
                failures.append(f"{name}: the image {image['src']} did not load")
        for href in tab.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            parts = urlsplit(href)
            if parts.scheme not in ("http", "https") or not href.startswith(site_url):
                external += parts.scheme in ("http", "https")
                if FILE_AS_HOST.search(parts.hostname or ""):
                    failures.append(f"{name}: a file name became the address {href}")
                continue
            links += 1
            target = html_root / unquote(parts.path).lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                failures.append(f"{name}: the link {href} leads to no file")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in anchors(target):
                failures.append(f"{name}: the link {href} leads to no anchor #{parts.fragment}")
    from metacourse.course.site import local_mathjax

    cdn = "mathjax" if local_mathjax() is None else None  # without jupyter-server-mathjax: MathJax's CDN
    refused = sorted({u for u in context.refused if not (cdn and cdn in u)})
    print(f"\nsite check: {len(book.pages)} pages, {images} images ({figures} in the pages' content), "
          f"{links} internal links checked, {external} external links not followed, "
          f"requests to other hosts refused: {len(context.refused)} ({len(refused)} besides MathJax's CDN)")
    assert not failures, f"{len(failures)} problem(s):\n" + "\n".join(failures[:50])
    assert not refused, f"pages fetch from other hosts (the site must stand on its own): {refused}"
    assert figures > 0, "no figure in any page: the stored outputs or the linked figures are missing"


def test_search_finds_maml(site_url, page):
    page.goto(f"{site_url}/search.html?q={SEARCH_WORD}", wait_until="load")
    # Sphinx's search lists its hits one by one, then says "Search finished, found N pages ...".
    page.wait_for_function("() => /Search finished|did not match/i.test("
                           "document.querySelector('#search-results')?.innerText || '')", timeout=60_000)
    hits = page.eval_on_selector_all("#search-results li a", "links => links.map(a => a.getAttribute('href'))")
    print(f"\nsearch {SEARCH_WORD!r}: {len(hits)} hit(s), e.g. {hits[:3]}")
    assert any("04_maml" in hit for hit in hits), f"searching {SEARCH_WORD!r} did not find the MAML lecture: {hits}"


def test_screenshot_of_the_maml_lecture(site_url, page, artifacts):
    """The top of the MAML lecture, and its first stored figure when it has one (``logs/browser``)."""
    from metacourse.course.site import local_mathjax

    page.goto(f"{site_url}/{_html_path(SCREENSHOT_PAGE)}", wait_until="load")
    if local_mathjax() is not None:  # the equations are typeset: no LaTeX delimiter is left in the text
        page.wait_for_function(r"() => !document.querySelector('article').innerText.includes('\\(')", timeout=60_000)
    time.sleep(1)  # the theme's scripts lay the page out after load
    shot = artifacts / "site-04_maml.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    figures = page.locator("article .cell_output img")
    print(f"\n{SCREENSHOT_PAGE}: {figures.count()} figure(s) in its stored outputs; screenshots in {artifacts}")
    if figures.count():
        figures.first.scroll_into_view_if_needed()
        time.sleep(0.5)
        page.screenshot(path=str(artifacts / "site-04_maml-figure.png"))
