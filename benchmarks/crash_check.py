"""What a crash left in a gallery store, checked against what the clients were told: the checks
shared by store_crash.py (a writer process killed mid-burst) and service_crash.py (the HTTP
service killed mid-burst).

An enrolment adds a few faces to one subject in one transaction; each face's metadata tells it
apart from the others (so "all its faces" is a comparison of metadata, not only a count). After
the crash the store is reopened and compared with the enrolments that were tried and those that
were answered:

- lost: answered, but the subject does not hold exactly the faces sent (or not the face ids the
  answer gave);
- half written: a subject holds some faces but not exactly one enrolment's set;
- stored unanswered: complete in the store, never answered (committed just before the kill);
- index misses: a stored face, searched with its own stored vector, is not its subject's top-1
  at cosine ~1 (the in-memory index rebuilt from the database disagrees with it);
- wrong vectors: a stored vector is not the one sent (where the caller knows what was sent);
- integrity: the backend's own check (SQLite: `PRAGMA integrity_check` and
  `foreign_key_check`; PostgreSQL: every vector opens, plus `postgres_consistency` below).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SELF_MATCH = 0.999  # a stored vector searched for itself scores 1 up to float error
Metadata = dict[str, Any]


@dataclass
class Tally:
    """The subjects (by name) in each class of the checks above, and the integrity problems."""

    answered: set[str] = field(default_factory=set)
    stored: set[str] = field(default_factory=set)  # subjects holding at least one face
    complete: set[str] = field(default_factory=set)  # holding exactly one enrolment's faces
    lost: set[str] = field(default_factory=set)
    half_written: set[str] = field(default_factory=set)
    stored_unanswered: set[str] = field(default_factory=set)
    empty_subjects: set[str] = field(default_factory=set)  # created (own transaction), no face yet
    index_misses: set[str] = field(default_factory=set)
    wrong_vectors: set[str] = field(default_factory=set)
    faces: dict[str, list[int]] = field(default_factory=dict)  # stored face ids by subject
    integrity: list[str] = field(default_factory=list)

    @property
    def face_count(self) -> int:
        return sum(map(len, self.faces.values()))

    def counts(self) -> dict[str, int | bool]:
        return {
            "answered": len(self.answered),
            "stored_subjects": len(self.stored),
            "lost_answered": len(self.lost),
            "half_written": len(self.half_written),
            "stored_unanswered": len(self.stored_unanswered),
            "empty_subjects": len(self.empty_subjects),
            "index_misses": len(self.index_misses),
            "wrong_vectors": len(self.wrong_vectors),
            "integrity_ok": not self.integrity,
        }


def _key(metadata: Metadata) -> str:
    return json.dumps(metadata, sort_keys=True)


def tally(
    store: Any,
    gallery: str,
    expected: Callable[[str], Sequence[Metadata] | None],
    answered: Mapping[str, Sequence[int] | None],
    reference: Callable[[str, Metadata], np.ndarray] | None = None,
) -> Tally:
    """Compare the reopened `store` with the enrolments: `expected(subject)` is the metadata of
    the faces sent for a subject (None: never sent), `answered` the subjects whose enrolment was
    answered (with the face ids of the answer, None where the caller did not see them),
    `reference(subject, metadata)` the vector that was sent, where the caller knows it."""
    result = Tally(answered=set(answered), integrity=list(store.check_integrity()))
    records = store.faces(gallery)
    by_subject: dict[str, list[Any]] = {}
    for record in records:
        by_subject.setdefault(record.subject, []).append(record)
    result.stored = set(by_subject)
    result.faces = {s: sorted(r.id for r in rs) for s, rs in by_subject.items()}
    result.empty_subjects = {s.name for s in store.subjects(gallery)} - result.stored
    for subject, faces in by_subject.items():
        sent = expected(subject)
        if sent is not None and Counter(_key(r.metadata) for r in faces) == Counter(map(_key, sent)):
            result.complete.add(subject)
    result.half_written = result.stored - result.complete
    for subject, ids in answered.items():
        if subject not in result.complete or (ids is not None and sorted(ids) != result.faces[subject]):
            result.lost.add(subject)
    result.stored_unanswered = result.complete - result.answered
    if records:
        _check_vectors(store, gallery, records, reference, result)
    return result


def _check_vectors(
    store: Any,
    gallery: str,
    records: list[Any],
    reference: Callable[[str, Metadata], np.ndarray] | None,
    result: Tally,
) -> None:
    vectors = store.vectors(gallery, [r.id for r in records])
    for record, found in zip(records, store.search(gallery, vectors, k=1), strict=True):
        if not found or found[0].subject != record.subject or found[0].score < SELF_MATCH:
            result.index_misses.add(record.subject)
    if reference is None:
        return
    for record, vector in zip(records, vectors, strict=True):
        sent = reference(record.subject, record.metadata)
        if float(vector @ (sent / np.linalg.norm(sent))) < SELF_MATCH:
            result.wrong_vectors.add(record.subject)


# ---- PostgreSQL: no amcheck in pgserver's build, so consistency is checked by counting -------
TABLES = ("galleries", "subjects", "faces")
HEAP_ONLY = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")
INDEX_ONLY = ("enable_seqscan", "enable_bitmapscan")


def postgres_consistency(url: str, gallery: str) -> list[str]:
    """Problems in the database itself (amcheck is not in pgserver's build):

    - every btree index of the store's tables holds the same rows as its table: the ids read
      in index order (the plan checked to be a scan of that index) equal those of a sequential
      scan;
    - the gallery's version counter, raised once in each transaction that adds faces, equals
      the number of subjects with faces (each enrolment is one transaction for one subject and
      nothing is deleted here): a transaction half applied would break the equality.
    """
    import psycopg

    problems = []
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            heap = _ids(conn, f"SELECT id FROM {table}", HEAP_ONLY)
            for name, columns in _indexes(conn, table):
                query = f"SELECT id FROM {table} ORDER BY {columns}"
                plan = "\n".join(r[0] for r in _rows(conn, f"EXPLAIN {query}", INDEX_ONLY))
                if f"using {name}" not in plan.lower():
                    problems.append(f"{table}: could not read through index {name}:\n{plan}")
                elif _ids(conn, query, INDEX_ONLY) != heap:
                    problems.append(f"{table}: index {name} and the table hold different rows")
        version, enrolled = conn.execute(
            "SELECT g.version, (SELECT count(DISTINCT s.id) FROM subjects s JOIN faces f ON f.subject_id = s.id "
            "WHERE s.gallery_id = g.id) FROM galleries g WHERE g.name = %s",
            (gallery,),
        ).fetchone()
        if version != enrolled:
            problems.append(f"gallery version {version} but {enrolled} enrolled subjects")
    return problems


def _indexes(conn: Any, table: str) -> list[tuple[str, str]]:
    """(name, indexed columns) of the table's btree indexes."""
    rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)).fetchall()
    return [(name, re.search(r"USING btree \((.*)\)$", definition).group(1)) for name, definition in rows]


def _rows(conn: Any, query: str, disabled: Sequence[str]) -> list[tuple]:
    """The query's rows with some plan types disabled (for this transaction only)."""
    with conn.transaction():
        for setting in disabled:
            conn.execute(f"SET LOCAL {setting} = off")
        return conn.execute(query).fetchall()


def _ids(conn: Any, query: str, disabled: Sequence[str]) -> list[int]:
    return sorted(row[0] for row in _rows(conn, query, disabled))
