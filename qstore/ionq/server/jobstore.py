"""The local server's job store: one SQLite file (WAL), durable before a job is acknowledged.

Guarantees the server builds on:

* **Never lost.** A job row is committed before ``POST /jobs`` answers, so a
  job the client saw accepted survives a crash or ``kill -9``;
  :meth:`JobStore.recover` hands every unfinished job back to the runner on
  the next start. Commits use WAL with ``synchronous=NORMAL``: a commit is
  in the WAL file (the operating system's page cache) when it returns, which
  a process crash cannot undo, but it reaches the disk only at the next
  checkpoint. A power cut or kernel crash can therefore lose the last
  commits: jobs acknowledged just before it (which the client then sees as
  404), or a finished job's result (which only makes it run again). The
  database itself stays consistent. ``FULL`` would close that window with an
  ``fsync`` per commit, which costs as much as the whole server-side work of
  a small job, or more.
* **Never run twice.** A run first *claims* the job (``ready -> started``,
  ``attempts + 1``) and may only finish it while it still holds that claim
  (same status and attempt), in one transaction with its children, so a
  cancel, delete or restart in between discards the stale result instead of
  overwriting anything. One server per database file is enforced by an
  exclusive ``flock`` on ``<db>.lock`` (released by the kernel on a crash),
  which is what makes re-queueing ``started`` jobs at start-up safe.
* **No crash loops.** A job that was ``started`` when the server died
  ``max_attempts`` times is marked ``failed`` at the next start instead of
  being run again (:meth:`JobStore.recover`).
* **Results streamed.** A running job's results are written circuit by
  circuit (:class:`ResultWriter`, each write checking the claim), so neither
  a job nor the store ever holds all of a large job's results at once.
* **Bounded.** :meth:`JobStore.purge` deletes jobs finished before a time
  (the server's ``retain`` option).
* **Isolation.** Every read and write of a client's job is filtered by its
  owner (a SHA-256 digest of its API key; keys themselves are never stored).

Multi-circuit jobs are a parent row plus one child row per circuit; children
share the parent's status and are finished in the parent's transaction.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: statuses of a job that still has to run
PENDING = ("submitted", "ready", "started")
#: statuses after which nothing changes (deleted rows are removed instead)
TERMINAL = ("completed", "failed", "canceled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- submission order
    id TEXT UNIQUE NOT NULL,
    owner TEXT NOT NULL,                     -- sha256 hex of the API key
    parent TEXT,                             -- parent job id (children of multi-circuit jobs)
    position INTEGER,                        -- index of a child's circuit in the parent's input
    status TEXT NOT NULL,
    summary TEXT NOT NULL,                   -- JSON: what GET /jobs/{id} reports besides the state
    request BLOB,                            -- POST /jobs body as received (top-level jobs only)
    idempotency_key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,     -- claims so far (> 1 only after a restart)
    result TEXT,                             -- JSON probabilities (children and single jobs)
    failure TEXT,                            -- JSON {"code", "error"}
    warnings TEXT,                           -- JSON list of messages
    execution_ms INTEGER,
    submitted_at REAL NOT NULL,              -- Unix seconds
    started_at REAL,
    completed_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, seq);
"""

#: columns added after the first release, with their declarations (added to older files at open)
_ADDED_COLUMNS = {"attempts": "INTEGER NOT NULL DEFAULT 0"}

_COLUMNS = ("seq, id, owner, parent, position, status, summary, attempts, result, failure, warnings, "
            "execution_ms, submitted_at, started_at, completed_at")


class StoreLockedError(RuntimeError):
    """Another server process already uses this database file."""


@dataclass(frozen=True)
class JobRow:
    """One stored job (a top-level job or a child of a multi-circuit job).

    Attributes:
        seq: submission order (also the list cursor).
        id: job id (a UUID string).
        owner: SHA-256 hex digest of the submitting API key.
        parent: the parent's id for a child, else None.
        position: a child's circuit index, else None.
        status: one of :data:`PENDING` or :data:`TERMINAL`.
        summary: JSON-ready fields fixed at submission (type, name, backend, shots, stats, metadata...).
        attempts: how many runs claimed it.
        result: JSON text of the probabilities (``{"<index>": p}``) once completed.
        failure: ``{"code", "error"}`` once failed.
        warnings: messages for the client (``warning.messages``).
        execution_ms: simulation wall time in milliseconds.
        submitted_at, started_at, completed_at: Unix seconds or None.
    """

    seq: int
    id: str
    owner: str
    parent: str | None
    position: int | None
    status: str
    summary: dict[str, Any]
    attempts: int
    result: str | None
    failure: dict[str, str] | None
    warnings: list[str]
    execution_ms: int | None
    submitted_at: float
    started_at: float | None
    completed_at: float | None

    @classmethod
    def _from(cls, row: tuple) -> JobRow:
        (seq, job_id, owner, parent, position, status, summary, attempts, result, failure, warnings,
         execution_ms, submitted_at, started_at, completed_at) = row
        return cls(seq, job_id, owner, parent, position, status, json.loads(summary), attempts, result,
                   json.loads(failure) if failure else None, json.loads(warnings) if warnings else [], execution_ms,
                   submitted_at, started_at, completed_at)


@dataclass(frozen=True)
class Claim:
    """A run's hold on a job: finish it with the same attempt number."""

    job_id: str
    attempt: int
    request: bytes | str  # the POST body as received (JSON text in databases of earlier versions)


class JobStore:
    """Jobs in one SQLite database file; use from one thread (the server's event loop).

    Args:
        path: database file (created if missing); ``<path>.lock`` guards it.

    Raises:
        StoreLockedError: another live process holds the lock.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = open(f"{self.path}.lock", "a")  # held (and locked) for the store's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreLockedError(f"{self.path} is in use by another server process") from None
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes; see the module docstring
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a database written by an earlier version up to :data:`_SCHEMA` (columns added since)."""
        columns = {name for _, name, *_ in self._db.execute("PRAGMA table_info(jobs)")}
        with self._db:
            for name, declaration in _ADDED_COLUMNS.items():
                if name not in columns:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")

    def close(self) -> None:
        """Close the database and release the lock."""
        self._db.close()
        self._lock.close()

    # ------------------------------------------------------------------ create and read

    def create(self, owner: str, job_id: str, summary: dict[str, Any], request: bytes, idempotency_key: str | None,
               children: Sequence[tuple[str, dict[str, Any]]] = ()) -> None:
        """Store a new job (status ``submitted``) and its children, committed when this returns."""
        now = time.time()
        with self._db:
            self._db.execute(
                "INSERT INTO jobs (id, owner, status, summary, request, idempotency_key, submitted_at)"
                " VALUES (?, ?, 'submitted', ?, ?, ?, ?)",
                (job_id, owner, json.dumps(summary), request, idempotency_key, now))
            self._db.executemany(
                "INSERT INTO jobs (id, owner, parent, position, status, summary, submitted_at)"
                " VALUES (?, ?, ?, ?, 'submitted', ?, ?)",
                [(child_id, owner, job_id, k, json.dumps(child), now) for k, (child_id, child) in enumerate(children)])

    def get(self, owner: str, job_id: str) -> JobRow | None:
        """The job if it exists and belongs to ``owner``."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
        return JobRow._from(row) if row else None

    def by_idempotency_key(self, owner: str, key: str) -> JobRow | None:
        """The owner's job created with this idempotency key, if any."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE owner = ? AND idempotency_key = ?",
                               (owner, key)).fetchone()
        return JobRow._from(row) if row else None

    def request(self, job_id: str) -> bytes | str | None:
        """The body a top-level job was created with (see :class:`Claim`); None for a child or an unknown id."""
        row = self._db.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def child_ids(self, parent_id: str) -> list[str]:
        """A multi-circuit job's children's ids in circuit order ([] for any other job)."""
        rows = self._db.execute("SELECT id FROM jobs WHERE parent = ? ORDER BY position", (parent_id,))
        return [child_id for (child_id,) in rows]

    def result(self, job_id: str) -> str | None:
        """One job's (or child's) result, JSON text; None if it has none (yet)."""
        row = self._db.execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    def child_results(self, parent_id: str) -> list[tuple[str, str | None]]:
        """``(id, result)`` of a multi-circuit job's children in circuit order (the JSON texts, unparsed)."""
        return self._db.execute("SELECT id, result FROM jobs WHERE parent = ? ORDER BY position",
                                (parent_id,)).fetchall()

    def jobs(self, owner: str, status: str | None, limit: int, before: int | None) -> list[JobRow]:
        """The owner's top-level jobs, newest first, with ``seq < before`` if given."""
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE owner = ? AND parent IS NULL"
        args: list[Any] = [owner]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if before is not None:
            sql += " AND seq < ?"
            args.append(before)
        rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [JobRow._from(row) for row in rows]

    # ------------------------------------------------------------------ the run's transitions

    def _set_family(self, job_id: str, sets: str, args: Sequence[Any], where: str, where_args: Sequence[Any]) -> bool:
        """Update a job and its children if the job matches ``where``; True if it did."""
        with self._db:
            changed = self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ? AND {where}",
                                       (*args, job_id, *where_args)).rowcount
            if changed:
                self._db.execute(f"UPDATE jobs SET {sets} WHERE parent = ?", (*args, job_id))
        return bool(changed)

    def mark_ready(self, job_id: str) -> bool:
        """``submitted -> ready`` (accepted into the queue)."""
        return self._set_family(job_id, "status = 'ready'", (), "status = 'submitted'", ())

    def claim(self, job_id: str) -> Claim | None:
        """``submitted|ready -> started`` with a new attempt number; None if the job is gone or not pending."""
        with self._db:
            row = self._db.execute(
                "UPDATE jobs SET status = 'started', started_at = ?, attempts = attempts + 1"
                " WHERE id = ? AND parent IS NULL AND status IN ('submitted', 'ready')"
                " RETURNING attempts, request", (time.time(), job_id)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE jobs SET status = 'started', started_at = ? WHERE parent = ?",
                             (time.time(), job_id))
        return Claim(job_id, row[0], row[1])

    def complete(self, claim: Claim, results: Sequence[str] | None, execution_ms: int,
                 warnings: Sequence[str]) -> bool:
        """Finish a claimed job; False if the claim was lost.

        ``results``: one result (JSON text) per circuit, or None if they were
        already written circuit by circuit (:class:`ResultWriter`). A
        single-circuit job keeps its result itself; a multi-circuit job's
        results go to its children, in circuit order.
        """
        now = time.time()
        with self._db:
            multi = self._db.execute("SELECT 1 FROM jobs WHERE parent = ? LIMIT 1", (claim.job_id,)).fetchone()
            own = None if results is None or multi else results[0]  # None: keep what was written
            finished = self._db.execute(
                "UPDATE jobs SET status = 'completed', completed_at = ?, execution_ms = ?, warnings = ?,"
                " result = COALESCE(?, result) WHERE id = ? AND status = 'started' AND attempts = ?",
                (now, execution_ms, json.dumps(list(warnings)), own, claim.job_id, claim.attempt)).rowcount
            if finished and multi:
                self._db.execute("UPDATE jobs SET status = 'completed', completed_at = ?, execution_ms = ?"
                                 " WHERE parent = ?", (now, execution_ms, claim.job_id))
                if results is not None:
                    self._db.executemany("UPDATE jobs SET result = ? WHERE parent = ? AND position = ?",
                                         [(text, claim.job_id, k) for k, text in enumerate(results)])
        return bool(finished)

    def fail(self, claim: Claim, code: str, message: str) -> bool:
        """Mark a claimed job (and its children) failed; False if the claim was lost."""
        failure = json.dumps({"code": code, "error": message})
        return self._set_family(claim.job_id, "status = 'failed', failure = ?, completed_at = ?",
                                (failure, time.time()), "status = 'started' AND attempts = ?", (claim.attempt,))

    # ------------------------------------------------------------------ client actions

    def cancel(self, owner: str, job_id: str) -> bool:
        """Cancel the owner's pending top-level job and its children; False if it was not pending."""
        return self._set_family(job_id, "status = 'canceled', completed_at = ?", (time.time(),),
                                "owner = ? AND parent IS NULL AND status IN ('submitted', 'ready', 'started')",
                                (owner,))

    def delete(self, owner: str, job_id: str) -> bool:
        """Remove the owner's top-level job and its children; False if there was none."""
        with self._db:
            deleted = self._db.execute("DELETE FROM jobs WHERE id = ? AND owner = ? AND parent IS NULL",
                                       (job_id, owner)).rowcount
            if deleted:
                self._db.execute("DELETE FROM jobs WHERE parent = ?", (job_id,))
        return bool(deleted)

    def recover(self, max_attempts: int = 3) -> list[tuple[str, str]]:
        """``(id, owner)`` of the top-level jobs left unfinished by a previous process, oldest first.

        ``started`` ones go back to ``ready``: their run died with that
        process (the lock guarantees no other process is running them);
        except those already claimed ``max_attempts`` times, which become
        ``failed`` (``InternalError``): a job whose run takes the process
        down is not retried forever.
        """
        crashed = "parent IS NULL AND status = 'started' AND attempts >= ?"
        failure = json.dumps({"code": "InternalError", "error": f"the server stopped while running this job "
                                                                f"{max_attempts} times; it is not run again"})
        now = time.time()
        with self._db:
            self._db.execute(f"UPDATE jobs SET status = 'failed', failure = ?, completed_at = ?"
                             f" WHERE parent IN (SELECT id FROM jobs WHERE {crashed})", (failure, now, max_attempts))
            self._db.execute(f"UPDATE jobs SET status = 'failed', failure = ?, completed_at = ? WHERE {crashed}",
                             (failure, now, max_attempts))
            self._db.execute("UPDATE jobs SET status = 'ready' WHERE status = 'started'")
        rows = self._db.execute("SELECT id, owner FROM jobs WHERE parent IS NULL AND status IN ('submitted', 'ready')"
                                " ORDER BY seq")
        return rows.fetchall()

    def purge(self, finished_before: float) -> int:
        """Delete the top-level jobs (bodies, results, children) that finished before this Unix time; how many."""
        old = "parent IS NULL AND status IN ('completed', 'failed', 'canceled') AND completed_at < ?"
        with self._db:
            self._db.execute(f"DELETE FROM jobs WHERE parent IN (SELECT id FROM jobs WHERE {old})", (finished_before,))
            return self._db.execute(f"DELETE FROM jobs WHERE {old}", (finished_before,)).rowcount

    def result_writer(self) -> ResultWriter:
        """A writer of a running job's results, for the calling thread (its own connection)."""
        return ResultWriter(self.path)


class ResultWriter:
    """Writes a claimed job's results circuit by circuit, from a worker thread, while the claim holds.

    Results reach the store as they are computed (one commit per circuit),
    so a job never holds all of them in memory; :meth:`JobStore.complete`
    with ``results=None`` then finishes the job. Use as a context manager,
    in one thread.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, timeout=60)
        self._db.execute("PRAGMA synchronous=NORMAL")

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._db.close()

    def write(self, claim: Claim, multi: bool, position: int, result: str) -> bool:
        """Store circuit ``position``'s result (JSON text); False if the claim was lost (canceled, deleted)."""
        held = "EXISTS (SELECT 1 FROM jobs WHERE id = ? AND status = 'started' AND attempts = ?)"
        with self._db:
            if multi:
                changed = self._db.execute(f"UPDATE jobs SET result = ? WHERE parent = ? AND position = ? AND {held}",
                                           (result, claim.job_id, position, claim.job_id, claim.attempt)).rowcount
            else:
                changed = self._db.execute("UPDATE jobs SET result = ? WHERE id = ? AND status = 'started'"
                                           " AND attempts = ?", (result, claim.job_id, claim.attempt)).rowcount
        return bool(changed)
