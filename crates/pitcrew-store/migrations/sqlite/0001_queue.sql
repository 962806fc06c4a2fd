-- The queue: one row per task, one row per attempt. Times are unix milliseconds (UTC).
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT, -- FIFO order within a priority
    id               TEXT    NOT NULL UNIQUE,           -- UUID v7
    kind             TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    targets          TEXT    NOT NULL,                  -- JSON array of repository paths
    repo             TEXT    NOT NULL,
    base_commit      TEXT    NOT NULL,
    priority         INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3), -- 0 critical … 3 low
    model            TEXT,                              -- preset name, NULL = default
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    idempotency_key  TEXT,
    metadata         TEXT    NOT NULL DEFAULT '{}',
    status           TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'possible_bug', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,        -- claims so far
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    error_kind       TEXT,
    last_error       TEXT,
    result_commit    TEXT,
    CHECK ((status = 'running') = (lease_token IS NOT NULL))
);

CREATE INDEX tasks_claimable ON tasks (priority, run_at, seq) WHERE status = 'queued';
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_by_status ON tasks (status, kind);
-- A key identifies one unfinished task; once it finishes the key may be used again.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status IN ('queued', 'running');

CREATE TABLE attempts (
    task_id     TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    worker      TEXT    NOT NULL,
    lease_token TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('running', 'completed', 'failed', 'possible_bug', 'abandoned', 'cancelled')),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    model       TEXT,
    tokens_in   INTEGER NOT NULL DEFAULT 0,
    tokens_out  INTEGER NOT NULL DEFAULT 0,
    cost_usd    REAL,
    latency_ms  INTEGER,
    findings    TEXT    NOT NULL DEFAULT '[]',         -- JSON array of findings
    error_kind  TEXT,
    error       TEXT,
    commit_sha  TEXT,
    patch       TEXT,
    PRIMARY KEY (task_id, number)
);
