"""The store's schema, in this one module: every CREATE TABLE, the schema version, the additive
and data migrations for stores made by earlier versions, and :func:`ensure_schema`."""
from __future__ import annotations

import duckdb

from gliocore.types import BASELINE_SCAN

SCHEMA_VERSION = 1

#: The whole schema. Tables, in the order data flows.
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS meta (
        key VARCHAR PRIMARY KEY,
        value VARCHAR)""",
    # A cohort = clinical CSV + image root (+ naming). cohort_id = hash of the resolved paths.
    """CREATE TABLE IF NOT EXISTS cohorts (
        cohort_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        clinical_csv VARCHAR NOT NULL,
        image_root VARCHAR NOT NULL,
        naming VARCHAR,
        updated_at TIMESTAMP,
        event_assumed BOOLEAN DEFAULT FALSE)""",
    # One row per clinical-table subject; clinical values as JSON (columns vary by cohort).
    """CREATE TABLE IF NOT EXISTS subjects (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        folder VARCHAR,
        has_images BOOLEAN NOT NULL,
        reference_mask VARCHAR,
        clinical_json VARCHAR NOT NULL,
        PRIMARY KEY (cohort_id, subject_id))""",
    # One row per scan (timepoint) of a subject; a cohort without timepoints has one scan per
    # subject, scan_id 'baseline'. days = days from the subject's first scan (NULL: unknown).
    """CREATE TABLE IF NOT EXISTS scans (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        scan_id VARCHAR NOT NULL,
        days DOUBLE,
        scan_order INTEGER NOT NULL,
        folder VARCHAR,
        reference_mask VARCHAR,
        PRIMARY KEY (cohort_id, subject_id, scan_id))""",
    """CREATE TABLE IF NOT EXISTS scan_images (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        scan_id VARCHAR NOT NULL,
        sequence VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        PRIMARY KEY (cohort_id, subject_id, scan_id, sequence))""",
    # The baseline scan's images (kept for the cross-sectional queries).
    """CREATE TABLE IF NOT EXISTS subject_images (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        sequence VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        PRIMARY KEY (cohort_id, subject_id, sequence))""",
    # Content hash and geometry of every image file, with brain-intensity statistics.
    """CREATE TABLE IF NOT EXISTS images (
        path VARCHAR PRIMARY KEY,
        size_bytes BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        sha256 VARCHAR NOT NULL,
        shape VARCHAR,
        spacing VARCHAR,
        brain_mean DOUBLE,
        brain_std DOUBLE,
        brain_median DOUBLE,
        brain_p01 DOUBLE,
        brain_p99 DOUBLE,
        hashed_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS segmentations (
        seg_key VARCHAR PRIMARY KEY,
        input_key VARCHAR NOT NULL,
        backend VARCHAR NOT NULL,
        backend_version VARCHAR NOT NULL,
        weights_checksum VARCHAR,
        cache_token VARCHAR NOT NULL,
        label_map VARCHAR NOT NULL,
        device VARCHAR,
        path VARCHAR NOT NULL,
        mask_sha256 VARCHAR NOT NULL,
        volume_ce_mm3 DOUBLE,
        volume_ne_mm3 DOUBLE,
        seconds DOUBLE,
        warnings VARCHAR,
        created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS radiomics_params (
        params_fingerprint VARCHAR PRIMARY KEY,
        params_json VARCHAR NOT NULL,
        created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS feature_sets (
        feature_key VARCHAR PRIMARY KEY,
        seg_key VARCHAR NOT NULL,
        params_fingerprint VARCHAR NOT NULL,
        n_values INTEGER,
        n_missing INTEGER,
        seconds DOUBLE,
        created_at TIMESTAMP)""",
    # Long form: one row per (feature set, class, sequence, feature). sequence '' = shape.
    """CREATE TABLE IF NOT EXISTS features (
        feature_key VARCHAR NOT NULL,
        tumour_class VARCHAR NOT NULL,
        sequence VARCHAR NOT NULL,
        feature VARCHAR NOT NULL,
        value DOUBLE,
        reason VARCHAR,
        PRIMARY KEY (feature_key, tumour_class, sequence, feature))""",
    # A configuration = backend cache token + radiomics params; config_key = hash of both.
    """CREATE TABLE IF NOT EXISTS configs (
        config_key VARCHAR PRIMARY KEY,
        backend VARCHAR NOT NULL,
        backend_version VARCHAR NOT NULL,
        cache_token VARCHAR NOT NULL,
        params_fingerprint VARCHAR NOT NULL,
        created_at TIMESTAMP)""",
    # Each scan's current result under a configuration.
    """CREATE TABLE IF NOT EXISTS scan_results (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        scan_id VARCHAR NOT NULL,
        config_key VARCHAR NOT NULL,
        input_key VARCHAR NOT NULL,
        seg_key VARCHAR NOT NULL,
        feature_key VARCHAR NOT NULL,
        updated_at TIMESTAMP,
        PRIMARY KEY (cohort_id, subject_id, scan_id, config_key))""",
    # Each subject's current result under a configuration: its baseline (first) scan's, the
    # one the cross-sectional analyses use (scan_id says which; added by a migration).
    """CREATE TABLE IF NOT EXISTS subject_results (
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        config_key VARCHAR NOT NULL,
        input_key VARCHAR NOT NULL,
        seg_key VARCHAR NOT NULL,
        feature_key VARCHAR NOT NULL,
        updated_at TIMESTAMP,
        PRIMARY KEY (cohort_id, subject_id, config_key))""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        cohort_id VARCHAR NOT NULL,
        config_key VARCHAR NOT NULL,
        backend VARCHAR,
        workers INTEGER,
        started_at TIMESTAMP,
        finished_at TIMESTAMP,
        status VARCHAR,
        n_subjects INTEGER,
        n_computed INTEGER,
        n_cached INTEGER,
        n_errors INTEGER)""",
    """CREATE TABLE IF NOT EXISTS subject_errors (
        run_id VARCHAR NOT NULL,
        cohort_id VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        stage VARCHAR,
        path VARCHAR,
        message VARCHAR NOT NULL,
        created_at TIMESTAMP)""",
    # Segmentation QC against reference masks (ground truth or expert masks).
    """CREATE TABLE IF NOT EXISTS qc_metrics (
        seg_key VARCHAR NOT NULL,
        reference_sha256 VARCHAR NOT NULL,
        region VARCHAR NOT NULL,
        dice DOUBLE,
        hd95_mm DOUBLE,
        volume_pred_mm3 DOUBLE,
        volume_ref_mm3 DOUBLE,
        volume_diff_mm3 DOUBLE,
        PRIMARY KEY (seg_key, reference_sha256, region))""",
    # Registrations of native-space images to an atlas template (gliocore.location.registration).
    # reg_key = hash(moving image SHA-256 + atlas + transform type + code version).
    """CREATE TABLE IF NOT EXISTS registrations (
        reg_key VARCHAR PRIMARY KEY,
        moving_sha256 VARCHAR NOT NULL,
        atlas VARCHAR NOT NULL,
        transform VARCHAR NOT NULL,
        code_version VARCHAR NOT NULL,
        transforms_json VARCHAR NOT NULL,
        brain_dice DOUBLE,
        seconds DOUBLE,
        created_at TIMESTAMP)""",
    # Location results of one segmentation (gliocore.location.regions), keyed by content:
    # location_key = hash(seg_key + mask SHA-256 + atlas + space + reg_key + code versions).
    """CREATE TABLE IF NOT EXISTS location_sets (
        location_key VARCHAR PRIMARY KEY,
        seg_key VARCHAR NOT NULL,
        atlas VARCHAR NOT NULL,
        space VARCHAR NOT NULL,
        reg_key VARCHAR,
        code_version VARCHAR NOT NULL,
        atlas_mask_path VARCHAR,
        seconds DOUBLE,
        created_at TIMESTAMP)""",
    # Long form: one row per (location set, class, feature); class 'vasari' holds F1..F25.
    """CREATE TABLE IF NOT EXISTS location_values (
        location_key VARCHAR NOT NULL,
        tumour_class VARCHAR NOT NULL,
        feature VARCHAR NOT NULL,
        value DOUBLE,
        label VARCHAR,
        reason VARCHAR,
        PRIMARY KEY (location_key, tumour_class, feature))""",
)

#: Additive changes for stores made by earlier versions of the same schema version.
MIGRATIONS: tuple[str, ...] = (
    "ALTER TABLE cohorts ADD COLUMN IF NOT EXISTS event_assumed BOOLEAN DEFAULT FALSE",
    # Scans (timepoints): the subject's result says which scan it is (the baseline's), errors
    # may name a scan. Old rows are the only scan of a cross-sectional cohort: 'baseline'.
    f"ALTER TABLE subject_results ADD COLUMN IF NOT EXISTS scan_id VARCHAR DEFAULT '{BASELINE_SCAN}'",
    "ALTER TABLE subject_errors ADD COLUMN IF NOT EXISTS scan_id VARCHAR",
    # QC (issue 8): the current reference mask's content hash per subject, so scores against a
    # removed or changed reference are not shown; the reference's label map and the QC
    # definitions' revision (HD95 by the BraTS definition + the pooled one) per score.
    "ALTER TABLE subjects ADD COLUMN IF NOT EXISTS reference_sha256 VARCHAR",
    "ALTER TABLE qc_metrics ADD COLUMN IF NOT EXISTS hd95_pooled_mm DOUBLE",
    "ALTER TABLE qc_metrics ADD COLUMN IF NOT EXISTS reference_label_map VARCHAR",
    "ALTER TABLE qc_metrics ADD COLUMN IF NOT EXISTS qc_version INTEGER",
    # cohort-level warnings of a run (JSON list), e.g. no enhancing voxel in any subject
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS warnings VARCHAR",
    # QC of every scan (issue 11): each scan's current reference mask's content hash, as
    # subjects.reference_sha256 is for the baseline (NULL in older stores until the cohort is
    # registered again, which every `process` run does)
    "ALTER TABLE scans ADD COLUMN IF NOT EXISTS reference_sha256 VARCHAR",
)

#: Data migrations, each run once per store (recorded in ``meta``): (key, statements).
DATA_MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # A store made before scans existed: each subject with images has one scan, 'baseline',
    # and its result is that scan's result. INSERT ... ON CONFLICT DO NOTHING, so re-running
    # (or a store already holding scans) changes nothing.
    ("migration_scans_v1", (
        """INSERT INTO scans (cohort_id, subject_id, scan_id, days, scan_order, folder,
                              reference_mask)
           SELECT cohort_id, subject_id, 'baseline', 0.0, 0, folder, reference_mask
           FROM subjects WHERE has_images ON CONFLICT DO NOTHING""",
        """INSERT INTO scan_images (cohort_id, subject_id, scan_id, sequence, path)
           SELECT cohort_id, subject_id, 'baseline', sequence, path FROM subject_images
           ON CONFLICT DO NOTHING""",
        """INSERT INTO scan_results (cohort_id, subject_id, scan_id, config_key, input_key,
                                     seg_key, feature_key, updated_at)
           SELECT cohort_id, subject_id, coalesce(scan_id, 'baseline'), config_key, input_key,
                  seg_key, feature_key, updated_at FROM subject_results
           ON CONFLICT DO NOTHING""",
    )),
)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table if absent, apply additive migrations, record the schema version."""
    for ddl in SCHEMA:
        con.execute(ddl)
    for ddl in MIGRATIONS:
        con.execute(ddl)
    for key, statements in DATA_MIGRATIONS:
        if con.execute("SELECT 1 FROM meta WHERE key = ?", [key]).fetchone() is None:
            con.execute("BEGIN TRANSACTION")
            try:
                for sql in statements:
                    con.execute(sql)
                con.execute("INSERT INTO meta VALUES (?, 'done')", [key])
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    elif int(row[0]) != SCHEMA_VERSION:
        raise RuntimeError(f"store schema version {row[0]} != {SCHEMA_VERSION}; "
                           "delete the .duckdb file to rebuild it (results are recomputed)")


def schema_problems(con: duckdb.DuckDBPyConnection) -> list[str]:
    """What a store opened read-only lacks for this version of GlioScope (empty when usable).

    A writable open repairs all of it (:func:`ensure_schema`); a read-only one can only report it.
    """
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    problems = [f"table {name} is missing" for name in _schema_tables() if name not in tables]
    if "meta" not in tables:
        return problems
    done = {r[0] for r in con.execute("SELECT key FROM meta").fetchall()}
    problems += [f"data migration {key!r} has not run" for key, _ in DATA_MIGRATIONS
                 if key not in done]
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None and int(row[0]) != SCHEMA_VERSION:
        problems.append(f"schema version {row[0]} != {SCHEMA_VERSION}")
    return problems


def _schema_tables() -> list[str]:
    return [ddl.split("EXISTS", 1)[1].split("(", 1)[0].strip() for ddl in SCHEMA]
