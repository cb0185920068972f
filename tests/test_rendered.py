"""Checks of the rendered book (run by CI after the book build; skipped when there is no build).

What a reader would notice: a script error in the console, a machine's absolute path, a raw
long float or "nan" in the prose, an image whose alt text is a file name, a chapter the landing
page does not link.
"""
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
PAGES = sorted(HTML.glob("notebooks/*.html")) + sorted(HTML.glob("book/*.html")) if HTML.is_dir() else []
pytestmark = pytest.mark.skipif(not PAGES, reason="the book is not built (python -m xferutils.build)")


class Page(HTMLParser):
    """Prose text (outside code, scripts and maths), images and script bodies of one page."""

    SKIP = {"script", "style", "pre", "code", "math", "svg"}

    def __init__(self) -> None:
        super().__init__()
        self.depth, self.text, self.images, self.scripts, self.links = 0, [], [], [], []
        self._script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.SKIP or "math" in (attrs.get("class") or ""):
            self.depth += 1
        self._script = tag == "script" and "src" not in attrs
        if tag == "img":
            self.images.append(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.depth:
            self.depth -= 1
        self._script = False

    def handle_data(self, data):
        if self._script:
            self.scripts.append(data.strip())
        elif not self.depth:
            self.text.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_no_duplicate_inline_scripts(path):
    scripts = [s for s in parse(path).scripts if s]
    dupes = {s[:60] for s in scripts if scripts.count(s) > 1}
    assert not dupes, f"{path.name}: inline scripts included twice: {dupes}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_prose_is_clean(path):
    text = " ".join(parse(path).text)
    assert not re.search(r"(?<![\w.])/(work|home|root|tmp|Users)/\S+", text), f"{path.name}: absolute path"
    assert not re.search(r"\b\d+\.\d{6,}\b", text), f"{path.name}: raw long float in the prose"
    assert not re.search(r"\bnan\b", text), f"{path.name}: 'nan' in the prose"
    assert "(s)" not in text, f"{path.name}: a fake plural such as 'image(s)'"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_images_have_meaningful_alt_text(path):
    for img in parse(path).images:
        alt = (img.get("alt") or "").strip()
        if "logo" in (img.get("class") or "") or img.get("src", "").endswith(".svg") and not alt:
            continue
        assert alt and not re.search(r"\.(png|svg|jpg)$", alt), f"{path.name}: image without alt text"


def test_landing_page_links_every_chapter():
    """The chapter table of the landing page (its article, not the sidebar) links every chapter."""
    html = (HTML / "book" / "intro.html").read_text(encoding="utf-8")
    article = Page()
    article.feed(html[html.index("<article"):html.index("</article>")])
    chapters = sorted(p.name for p in HTML.glob("notebooks/[0-9]*.html"))
    missing = [c for c in chapters if not any(c in link for link in article.links)]
    assert not missing, f"the landing page does not link {missing}"
