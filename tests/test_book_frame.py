"""The book's frame: configuration and the local Sphinx extension (book/_ext/bookframe.py)."""
import sys
from pathlib import Path

from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import bookframe  # noqa: E402


def test_bibliography_labels_are_author_year_and_unique():
    bib = parse_file(str(ROOT / "book" / "references.bib"))
    entries = sorted(bib.entries.values(), key=lambda e: e.key)
    labels = list(bookframe.AuthorYearLabels().format_labels(entries))
    assert len(set(labels)) == len(labels)
    by_key = dict(zip((e.key for e in entries), labels))
    assert by_key["lecun1998mnist"] == "LeCun et al. 1998"
    assert by_key["howard2018ulmfit"] == "Howard and Ruder 2018"
    assert by_key["vandeven2019three"] == "van de Ven and Tolias 2019"


def test_duplicate_scripts_dropped():
    class JS:
        def __init__(self, filename, **attributes):
            self.filename, self.attributes = filename, attributes
    scripts = [JS(None, body="const A = 1"), JS("x.js"), JS("", body="const A = 1"), JS("x.js")]
    context = {"script_files": scripts}
    bookframe._drop_duplicate_scripts(None, "p", "t", context, None)
    assert [(s.filename, s.attributes) for s in context["script_files"]] == [(None, {"body": "const A = 1"}), ("x.js", {})]


def test_config_hides_the_empty_top_bar_and_uses_author_year_labels():
    text = (ROOT / "_config.yml").read_text()
    assert "navbar_persistent: []" in text and "bibtex_default_style: authoryear" in text
    assert "bookframe: book/_ext" in text
