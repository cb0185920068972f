"""Checks of the rendered book (run by CI after the book build; skipped when there is no build).

What a reader would notice: a script error in the console, a machine's absolute path, a raw
long float or "nan" in the prose, an image whose alt text is a file name, a chapter the landing
page does not link; and the blemishes of issue 20: glued values in bold, a list glued into a
paragraph ("... - item"), "(s)", "-0.0", e-notation in the prose, raw dicts printed, file hashes
in headings, printed lines wider than the column, figures numbered through the book, buttons to
an invented repository address.
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
    """Prose text (outside code, scripts and maths), images and script bodies of one page; also
    its paragraphs, headings, printed (stdout) outputs, stylesheets and caption numbers."""

    SKIP = {"script", "style", "pre", "code", "math", "svg"}
    HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__()
        self.depth, self.text, self.images, self.scripts, self.links = 0, [], [], [], []
        self.paragraphs, self.headings, self.outputs, self.styles, self.icons = [], [], [], [], []
        self.captions, self.link_texts = [], []
        self._script = False
        self._open: list[tuple[str, bool]] = []  # open elements, and whether each hides its text
        self._p = self._h = self._out = self._cap = self._a = None
        self._out_depth = self._div_depth = 0

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
            "track", "wbr"}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        cls = attrs.get("class") or ""
        skip = tag in self.SKIP or "math" in cls.split()  # not "mathjax_ignore" (MyST-NB sections)
        if tag not in self.VOID:  # an element with a class "math" ends with its own end tag
            self._open.append((tag, skip))
            self.depth += skip
        self._script = tag == "script" and "src" not in attrs
        if tag == "img":
            self.images.append(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
            self._a = [attrs["href"], []]
        if tag == "link" and "stylesheet" in (attrs.get("rel") or ""):
            self.styles.append(attrs.get("href") or "")
        if tag == "link" and "icon" in (attrs.get("rel") or ""):
            self.icons.append(attrs.get("href") or "")
        if tag == "p":
            self._p = []
        if tag in self.HEADINGS:
            self._h = []
        if tag == "div":
            self._div_depth += 1
            if "stream" in cls.split() and "output" in cls.split() and not self._out_depth:  # printed
                self._out_depth = self._div_depth
        if tag == "pre" and self._out_depth:
            self._out = []
        if tag == "span" and "caption-number" in cls:
            self._cap = []

    def handle_endtag(self, tag):
        if any(t == tag for t, _ in self._open):
            while self._open:
                t, skip = self._open.pop()
                self.depth -= skip
                if t == tag:
                    break
        self._script = False
        if tag == "p" and self._p is not None:
            self.paragraphs.append("".join(self._p))
            self._p = None
        if tag in self.HEADINGS and self._h is not None:
            self.headings.append("".join(self._h).strip())
            self._h = None
        if tag == "pre" and self._out is not None:
            self.outputs.append("".join(self._out))
            self._out = None
        if tag == "div":
            if self._div_depth == self._out_depth:
                self._out_depth = 0
            self._div_depth -= 1
        if tag == "span" and self._cap is not None:
            self.captions.append("".join(self._cap).strip())
            self._cap = None
        if tag == "a" and self._a is not None:
            self.link_texts.append((self._a[0], "".join(self._a[1]).strip()))
            self._a = None

    def handle_data(self, data):
        for part in (self._p, self._h, self._out, self._cap, self._a and self._a[1]):
            if part is not None:
                part.append(data)
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
    fake = re.findall(r".{0,30}\w\(s\)", text)  # "image(s)"; a unit such as "Run Time (s)" is fine
    assert not fake, f"{path.name}: a fake plural: {fake[:3]}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_no_word_said_twice(path):
    """A glued phrase beside typed text can repeat a word ("exercise Exercise 7.1", "is is")."""
    twice = [m.group(0) for para in parse(path).paragraphs
             for m in re.finditer(r"\b(\w{2,})\s+\1\b", para, re.IGNORECASE)]
    assert not twice, f"{path.name}: a word said twice: {twice[:3]}"


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


# --- issue 20: the blemishes a reader met in the browser ---------------------------------------

COLUMN = 88  # monospace characters in the page's column at 1400 px
CHAPTER_PAGES = [p for p in PAGES if re.match(r"\d\d_", p.name)]


def css() -> str:
    return (HTML / "_static" / "book.css").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_glued_values_in_the_text_weight(path):
    """MyST-NB sets pasted text in bold; book.css (linked by every page) sets it back."""
    page = parse(path)
    assert any(s.endswith("_static/book.css") or "book.css?" in s for s in page.styles), f"{path.name}: no book.css"
    assert re.search(r"span\.pasted-text\s*\{\s*font-weight:\s*inherit", css())


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_no_list_glued_into_a_paragraph(path):
    bad = [p for p in parse(path).paragraphs if re.search(r"(^|[.:;]\s+)- [\w*(`°]", p.strip())]
    assert not bad, f"{path.name}: a bulleted list rendered inside a paragraph: {bad[0][:160]!r}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_numbers_read_as_prose(path):
    text = " ".join(parse(path).text)
    neg = re.findall(r".{0,30}(?<![\w.])[-−]0(?:\.0+)?(?![\d.]).{0,10}", text)
    assert not neg, f"{path.name}: a negative zero: {neg[:3]}"
    sci = re.findall(r".{0,30}(?<![\w.])\d(?:\.\d+)?e[-+]?\d+\b.{0,10}", text)
    assert not sci, f"{path.name}: e-notation in the prose: {sci[:3]}"
    ones = [m.group(0) for m in re.finditer(r"(\S+ )?(?<![\d.,])\b1 (seeds|threads|images|labels|epochs|runs)\b", text)
            if not (m.group(1) or " ")[0].isupper()]  # "Network 1 labels" names a network
    assert not ones, f"{path.name}: a plural after 1: {ones[:3]}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_no_raw_dicts_printed(path):
    raw = [o for o in parse(path).outputs if re.search(r"\{\s*['\"][^'\"]+['\"]\s*:", o)]
    assert not raw, f"{path.name}: a Python dict printed as is: {raw[0][:120]!r}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_no_file_hashes_in_headings(path):
    bad = [h for h in parse(path).headings if re.search(r"\b\d{3}_[0-9a-f]{8,}\b", h)]
    assert not bad, f"{path.name}: a file name with its hash in a heading: {bad}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_printed_lines_fit_the_column(path):
    """Printed output wraps within the column (book.css); the lines a chapter prints itself, such
    as the environment line, fit it without wrapping."""
    assert re.search(r"div\.cell_output pre[^{]*\{[^}]*white-space:\s*pre-wrap", css())
    long = [line for out in parse(path).outputs for line in out.splitlines() if len(line) > COLUMN]
    assert not long, f"{path.name}: {len(long)} printed lines over {COLUMN} characters, e.g. {long[0]!r}"


@pytest.mark.parametrize("path", CHAPTER_PAGES, ids=lambda p: p.stem)
def test_figures_and_exercises_numbered_per_chapter(path):
    chapter = int(path.name[:2])
    numbers = [c for c in parse(path).captions if re.match(r"(Fig\.|Table|Exercise)", c)]
    html = path.read_text(encoding="utf-8")
    exercises = re.findall(r"Exercise (\d+(?:\.\d+)?)", html)
    assert numbers or exercises, f"{path.name}: no numbered figure or exercise"
    for label in numbers:
        assert re.match(rf"(Fig\.|Table|Exercise) {chapter}\.\d+\b", label), f"{path.name}: {label!r} is not numbered in chapter {chapter}"
    assert all(e.startswith(f"{chapter}.") for e in exercises), f"{path.name}: exercises {sorted(set(exercises))}"


def test_landing_table_titles_are_the_pages_titles():
    html = (HTML / "book" / "intro.html").read_text(encoding="utf-8")
    article = Page()
    article.feed(html[html.index("<article"):html.index("</article>")])
    for chapter in sorted(HTML.glob("notebooks/*.html")):
        title = parse(chapter).headings[0].rstrip("#").strip()
        texts = [t for href, t in article.link_texts if href.split("#")[0].endswith(chapter.name)]
        assert title in texts, f"the landing page names {chapter.name} {texts}, its page {title!r}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_no_invented_addresses_and_a_favicon(path):
    html = path.read_text(encoding="utf-8")
    for address in ("github.com/xferbook", "mybinder.org", "colab.research.google.com", "git+https://"):
        assert address not in html, f"{path.name}: {address} (the repository address is not set)"
    assert parse(path).icons, f"{path.name}: no favicon link (the browser asks for /favicon.ico)"
    # the theme logs "Got invalid theme mode" as a console error where no default mode is set
    assert 'localStorage.getItem("mode") || "auto"' in html, f"{path.name}: no default colour mode"
