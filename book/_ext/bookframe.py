"""The book's frame: author-year bibliography labels and one copy of each page script.

Loaded by ``_config.yml`` (``sphinx.local_extensions``).

- Citations in the text are author-year (``bibtex_reference_style: author_year``); the
  bibliography's own labels follow suit ("LeCun et al. 1998", not "[LBBH98]") through the pybtex
  style ``authoryear`` registered here.
- sphinx-thebe adds its configuration script to every page twice, so the browser logs
  "Identifier 'THEBE_JS_URL' has already been declared"; duplicates are dropped before rendering.
- The repository address is one setting, ``repository.url`` in ``_config.yml``. While it is
  empty (the book has no public address yet) the repository, issue and launch buttons are off,
  and every chapter's install cell (tagged ``install``) is left out of the pages.
- Figures and exercises are numbered per chapter ("Fig. 3.2", "Exercise 3.1"): the chapter's
  number comes from its file name (``notebooks/03_strategies``).
- Glued numbers read as prose: no "-0.0", no e-notation (``xferutils.pages.results.tidy`` applied to
  every ``{glue:text}`` value).
- ``book.css``: glued values in the text's weight, values with "±" kept on one line, claim ids
  and printed lines wrapped within the column, figures scrollable at full size on a phone.
"""
from __future__ import annotations

import re

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    return str(Text.from_latex(" ".join(person.prelast_names + person.last_names)))


def author_year(entry) -> str:
    """``LeCun et al. 1998``, ``Snell and Zemel 2017``, ``Pan 2010``."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    people = [p for p in people if str(p) != "others"]
    if not people:
        names = entry.fields.get("title", entry.key)[:20]
    elif len(people) == 1:
        names = _surname(people[0])
    elif len(people) == 2 and len(entry.persons.get("author", [])) == 2:
        names = f"{_surname(people[0])} and {_surname(people[1])}"
    else:
        names = f"{_surname(people[0])} et al."
    return f"{names} {entry.fields.get('year', '')}".strip()


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        seen: dict[str, int] = {}
        for entry in sorted_entries:
            label = author_year(entry)
            seen[label] = seen.get(label, 0) + 1
            yield label if seen[label] == 1 else f"{label}{chr(ord('a') + seen[label] - 1)}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = (getattr(js, "filename", js) or "", repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def repository_url(config) -> str:
    """The book's repository address (``repository.url`` in ``_config.yml``), or ``""``."""
    url = (getattr(config, "html_theme_options", {}) or {}).get("repository_url") or ""
    return url.strip() if re.match(r"https?://\S+/\S+", url.strip()) else ""


def _buttons_follow_the_repository(app, config) -> None:
    """Repository, issue and launch buttons only where the repository address is set (then on)."""
    options = config.html_theme_options
    if repository_url(config):
        options["use_repository_button"] = options["use_issues_button"] = True
    else:
        options["repository_url"] = ""
        options["use_repository_button"] = False
        options["use_issues_button"] = False
        options["use_edit_page_button"] = False
        options["launch_buttons"] = {}


def _default_mode(app, config) -> None:
    """A first visit has no stored colour mode; without a default the theme logs "Got invalid
    theme mode" as an error in the console. "auto" follows the reader's system setting."""
    config.html_context = {**(config.html_context or {}), "default_mode": "auto"}


def _drop_install_cells(app, doctree) -> None:
    """Leave the install cells (tag ``install``) out of the pages while there is no address."""
    if repository_url(app.config):
        return
    from docutils import nodes

    for node in list(doctree.findall(nodes.container)):
        if "tag_install" in node.get("classes", []):
            node.parent.remove(node)


CHAPTER = re.compile(r"(?:^|/)(\d+)_[^/]*$")


def chapter_number(docname: str) -> int | None:
    """``notebooks/03_strategies`` -> 3; None for pages that are not numbered chapters."""
    match = CHAPTER.search(docname)
    return int(match.group(1)) if match else None


def renumber_per_chapter(fignumbers: dict) -> list[str]:
    """Number figures, tables, exercises... per chapter: ``(3, 1), (3, 2)`` in the order of the
    book-wide numbers Sphinx assigned; return the documents whose numbers changed."""
    changed = []
    for docname, kinds in fignumbers.items():
        chapter = chapter_number(docname)
        if chapter is None:
            continue
        for figtype, numbers in kinds.items():
            ordered = sorted(numbers, key=lambda k: numbers[k])
            new = {key: (chapter, i + 1) for i, key in enumerate(ordered)}
            if new != numbers:
                kinds[figtype] = new
                changed.append(docname)
    return sorted(set(changed))


def _number_per_chapter(app, env) -> list[str]:
    return renumber_per_chapter(env.toc_fignumbers)


def tidy_glued_text() -> bool:
    """Route MyST-NB's formatting of ``{glue:text}`` values through ``xferutils.pages.results.tidy``."""
    try:
        from xferutils.pages.results import tidy
    except ImportError:  # the package is not installed: leave MyST-NB as it is
        return False
    import myst_nb.core.variables as variables
    from myst_nb.ext.glue import crossref, roles

    original = getattr(variables.format_plain_text, "__wrapped__", variables.format_plain_text)

    def format_plain_text(text: str, fmt_spec: str) -> str:
        return tidy(original(text, fmt_spec))

    format_plain_text.__wrapped__ = original
    variables.format_plain_text = roles.format_plain_text = crossref.format_plain_text = format_plain_text
    return True


def setup(app):
    tidy_glued_text()
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("config-inited", _buttons_follow_the_repository, priority=900)
    app.connect("config-inited", _default_mode, priority=900)
    app.connect("doctree-read", _drop_install_cells)
    app.connect("env-get-updated", _number_per_chapter, priority=900)  # after Sphinx's numbering
    app.add_css_file("book.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
