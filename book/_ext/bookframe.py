"""The book's frame: author-year bibliography labels and one copy of each page script.

Loaded by ``_config.yml`` (``sphinx.local_extensions``).

- Citations in the text are author-year (``bibtex_reference_style: author_year``); the
  bibliography's own labels follow suit ("LeCun et al. 1998", not "[LBBH98]") through the pybtex
  style ``authoryear`` registered here.
- sphinx-thebe adds its configuration script to every page twice, so the browser logs
  "Identifier 'THEBE_JS_URL' has already been declared"; duplicates are dropped before rendering.
"""
from __future__ import annotations

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


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
