"""The dashboard's side of :mod:`pages._jobs`: start background work from a click, show its
progress (a sidebar line on every page, a bar on the Cohort page, both refreshed every second
while it runs) and, once it ends, tell the session that started it and switch to its cohort."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from gliocore.settings import Settings
from pages._jobs import JOBS, Job, JobBusy

MINE = "_glioscope_my_job"
NOTICE = "_glioscope_job_notice"
PENDING_COHORT = "_glioscope_pending_cohort"  # as pages._context.PENDING_COHORT
REFRESH_S = 1.0


def store_key(settings: Settings) -> str:
    return str(settings.db)


def start(settings: Settings, kind: str, label: str, stages: tuple[str, ...],
          work: Callable[[Job], Any]) -> None:
    """Start ``work(job)`` in the background for this session, then rerun to show its progress;
    a job already running on the store is reported instead."""
    try:
        job = JOBS.start(Job(store_key(settings), kind, label, stages), work)
    except JobBusy as exc:
        st.error(str(exc))
        return
    st.session_state[MINE] = job.job_id
    st.rerun()


def collect_ended(settings: Settings) -> None:
    """When this session's job has ended: keep its message for the Cohort page and switch to
    the cohort it loaded or processed (call before the cohort picker)."""
    job = JOBS.current(store_key(settings))
    if job is None or job.running or st.session_state.get(MINE) != job.job_id:
        return
    st.session_state.pop(MINE, None)
    st.session_state[NOTICE] = (job.state, job.message or f"{job.label}: {job.state}")
    if job.state == "finished" and job.cohort_id:
        st.session_state[PENDING_COHORT] = job.cohort_id
    st.cache_data.clear()  # the store changed (the stamp would also see it)


def show_notice() -> None:
    """The ended job's message (success or error), once."""
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        state, message = notice
        (st.success if state == "finished" else st.error)(message)


def sidebar_status(settings: Settings) -> None:
    """One sidebar line while a job runs on the store (any session's), refreshed every second."""
    job = JOBS.running(store_key(settings))
    if job is not None:
        with st.sidebar:
            _live_line(job.store_key, job.job_id)


@st.fragment(run_every=REFRESH_S)
def _live_line(key: str, job_id: str) -> None:
    job = JOBS.current(key)
    if job is None or job.job_id != job_id or not job.running:
        st.rerun()  # it ended: rerun the whole page (new results, the notice, the cohort)
    st.caption(f":material/hourglass_top: {job.line()}")


def progress_panel(settings: Settings) -> Job | None:
    """The running job's bar and line on the Cohort page (refreshed every second); the job."""
    job = JOBS.running(store_key(settings))
    if job is not None:
        _live_panel(job.store_key, job.job_id)
    return job


@st.fragment(run_every=REFRESH_S)
def _live_panel(key: str, job_id: str) -> None:
    job = JOBS.current(key)
    if job is None or job.job_id != job_id or not job.running:
        st.rerun()
    st.progress(job.fraction(), text=job.line())
    st.caption("It runs on the server: you may leave this page or close the tab; its progress "
               "stays in the sidebar of every page.")
