"""The package's layers: the core imports no chapter and no page builder of a chapter; a chapter
imports the core and the pages, never another chapter; every core module has its test file
(issue 21)."""
import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "xferutils"


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*parts[:len(parts) - node.level], *([base] if base else [])])
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def chapter_of(module: str) -> str | None:
    """``xferutils.chapters.what_works.fewshot`` -> ``what_works``; None outside the chapters."""
    bits = module.split(".")
    return bits[2] if len(bits) > 2 and bits[:2] == ["xferutils", "chapters"] else None


@pytest.mark.parametrize("path", sorted((PKG / "core").glob("*.py")), ids=lambda p: p.stem)
def test_the_core_imports_no_chapter(path):
    assert not [m for m in imported(path) if chapter_of(m)], f"{path.name} imports a chapter"


@pytest.mark.parametrize("path", sorted(p for p in (PKG / "chapters").rglob("*.py") if p.name != "__init__.py"),
                         ids=lambda p: p.stem)
def test_a_chapter_imports_no_other_chapter(path):
    own = chapter_of(".".join(path.relative_to(PKG.parent).with_suffix("").parts))
    others = sorted({m for m in imported(path) if chapter_of(m) not in (None, own)})
    assert not others, f"{path.name} (chapter {own}) imports {others}"


def test_imported_resolves_relative_imports(tmp_path):
    assert "xferutils.core.data" in imported(PKG / "core" / "references.py") or \
        "xferutils.core.data.Split" in imported(PKG / "core" / "references.py")
    assert chapter_of("xferutils.chapters.what_works.fewshot") == "what_works"
    assert chapter_of("xferutils.core.data") is None


CORE = sorted(p for p in (PKG / "core").glob("*.py") if p.name != "__init__.py")
TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.stem)
def test_every_core_module_has_its_test_file_and_every_public_name_is_tested(path):
    """tests/test_<module>.py exists, and each public function or class of the module is named
    in some test (what a reader adopting the core can rely on)."""
    assert (TESTS / f"test_{path.stem}.py").exists(), f"no tests/test_{path.stem}.py"
    tests = "\n".join(p.read_text() for p in [*TESTS.glob("test_*.py"), TESTS / "conftest.py"] if p.exists())
    public = [n.name for n in ast.parse(path.read_text()).body
              if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]
    untested = [n for n in public if not re.search(rf"\b{n}\b", tests)]
    assert not untested, f"{path.name}: no test names {untested}"
