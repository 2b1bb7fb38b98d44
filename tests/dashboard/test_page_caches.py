"""Page-edge caches never outlive what they were computed from (issue 18, point 4).

Streamlit does not hash ``_``-prefixed arguments of ``st.cache_data`` functions: an argument that
changes the result under such a name serves the previous result (the Classifiers page showed the
overall-survival AUCs after the endpoint was switched to PFS). Every cached function in pages/
is checked for such arguments, and the Classifiers and Survival pages are driven through a
changed endpoint, threshold and filter.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from test_app_pages import N_SUBJECTS, _open, n_of_n, sidebar_widget, texts  # noqa: F401

PAGES = Path(__file__).resolve().parents[2] / "pages"


def _cached_functions():
    for path in sorted(PAGES.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if ast.unparse(target) == "st.cache_data":
                    yield path.name, node


def test_no_cached_function_in_pages_has_an_unhashed_argument():
    found = list(_cached_functions())
    assert len(found) >= 10      # the audit sees the page caches (pages/_common.py included)
    unhashed = [f"{name}:{fn.name}({a.arg})" for name, fn in found
                for a in fn.args.args + fn.args.kwonlyargs if a.arg.startswith("_")]
    assert not unhashed, ("cache_data arguments Streamlit does not hash (a changed value serves "
                          f"the old result): {unhashed}")


def _auc(at) -> float | None:
    for df in at.dataframe:
        if "AUC" in df.value.columns:
            return float(df.value["AUC"].iloc[0])
    return None


def _quick_classifier(at):
    at.multiselect(key="clf_models").set_value(["logreg"])
    at.number_input(key="clf_perm").set_value(0)
    at.number_input(key="clf_repeats").set_value(1)
    at.run()
    at.button(key="clf_run").click().run()
    assert not at.exception, at.exception
    return _auc(at)


def _labelled(at) -> str:
    return next(m.value for m in at.markdown if "subjects labelled" in m.value)


@pytest.mark.slow
def test_classifier_results_follow_endpoint_threshold_and_filter(long_env):
    at = _open("classifiers")
    os_auc = _quick_classifier(at)
    os_labels = _labelled(at)
    assert os_auc is not None
    # another endpoint: the old AUCs are not shown; Run computes them for the new labels
    at.radio(key="clf_endpoint").set_value("Progression-free survival").run()
    assert not at.exception, at.exception
    assert _auc(at) is None, "overall-survival AUCs shown under PFS without Run"
    at.button(key="clf_run").click().run()
    pfs_auc, pfs_labels = _auc(at), _labelled(at)
    assert pfs_auc is not None
    assert (pfs_auc, pfs_labels) != (os_auc, os_labels)
    # back to OS: the OS results again (cached), not the PFS ones
    at.radio(key="clf_endpoint").set_value(at.radio(key="clf_endpoint").options[0]).run()
    at.button(key="clf_run").click().run()
    assert _auc(at) == pytest.approx(os_auc)
    # another threshold, another filter: Run is needed again, and the result follows
    at.number_input(key="clf_threshold").set_value(9.0).run()
    assert _auc(at) is None
    at.button(key="clf_run").click().run()
    assert _auc(at) is not None
    sidebar_widget(at, "radio", "IDH status").set_value("wildtype").run()
    assert n_of_n(at)[0] < N_SUBJECTS and _auc(at) is None


def _bar_times(at) -> str:
    """The survival bars' values as drawn (plotly's encoding, compared as it is)."""
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("-seed_bars"))
    return json.dumps([t.get("y") for t in json.loads(chart.proto.spec)["data"]], sort_keys=True)


@pytest.mark.slow
def test_survival_figures_follow_endpoint_and_filter(long_env):
    at = _open("survival")
    os_bars = _bar_times(at)
    at.radio(key="survival_endpoint").set_value("Progression-free survival").run()
    assert not at.exception, at.exception
    assert _bar_times(at) != os_bars
    at.radio(key="survival_endpoint").set_value(at.radio(key="survival_endpoint").options[0]).run()
    assert _bar_times(at) == os_bars
    sidebar_widget(at, "radio", "IDH status").set_value("mutant").run()
    assert not at.exception, at.exception
    assert _bar_times(at) != os_bars
