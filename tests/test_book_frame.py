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


def test_figures_and_exercises_numbered_per_chapter():
    numbers = {"notebooks/03_strategies": {"figure": {"fig-b": (9,), "fig-a": (8,)}, "exercise": {"e1": (20,)}},
               "book/intro": {"figure": {"x": (1,)}}}
    changed = bookframe.renumber_per_chapter(numbers)
    assert changed == ["notebooks/03_strategies"]
    assert numbers["notebooks/03_strategies"] == {"figure": {"fig-a": (3, 1), "fig-b": (3, 2)},
                                                 "exercise": {"e1": (3, 1)}}
    assert numbers["book/intro"] == {"figure": {"x": (1,)}}
    assert bookframe.chapter_number("notebooks/ledger") is None


class _Config:
    def __init__(self, url):
        self.html_theme_options = {"repository_url": url, "use_repository_button": False,
                                   "use_issues_button": False, "launch_buttons": {"colab_url": "https://colab"}}


def test_buttons_off_while_the_repository_address_is_unset():
    unset = _Config("")
    bookframe._buttons_follow_the_repository(None, unset)
    assert not unset.html_theme_options["use_repository_button"] and unset.html_theme_options["launch_buttons"] == {}
    real = _Config("https://example.org/group/book")
    bookframe._buttons_follow_the_repository(None, real)
    assert real.html_theme_options["use_repository_button"] and real.html_theme_options["launch_buttons"]


def test_first_visit_has_a_colour_mode():
    class Config:
        html_context = {"other": 1}
    config = Config()
    bookframe._default_mode(None, config)
    assert config.html_context == {"other": 1, "default_mode": "auto"}


def test_no_invented_repository_address():
    """The address is one setting (_config.yml), empty until the book has a public one; no chapter
    carries an address of its own."""
    import yaml

    assert yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"] == ""
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = nb.read_text()
        assert "github.com" not in text and "git+http" not in text, nb.name
        assert '"install"' in text, f"{nb.name}: no install cell (tag 'install')"


def test_glued_numbers_are_tidied():
    assert bookframe.tidy_glued_text()
    from myst_nb.ext.glue import roles

    assert roles.format_plain_text("-0.04", "+.1f") == "0.0"
    assert roles.format_plain_text("9.5e-07", ".1e") == "9.5 × 10⁻⁷"
    assert roles.format_plain_text("'a text'", "") == "a text" and roles.format_plain_text("1234", ",") == "1,234"
