-- The queue: one row per task, one row per attempt. Same tables and rules as the SQLite
-- schema, in native types; every time is the server's (now()), never a client's clock.
CREATE TABLE tasks (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- FIFO order within a priority
    id               UUID        NOT NULL UNIQUE,                    -- UUID v7
    kind             TEXT        NOT NULL,
    description      TEXT        NOT NULL,
    targets          JSONB       NOT NULL,                           -- array of repository paths
    repo             TEXT        NOT NULL,
    base_commit      TEXT        NOT NULL,
    priority         SMALLINT    NOT NULL CHECK (priority BETWEEN 0 AND 3), -- 0 critical … 3 low
    model            TEXT,                                           -- preset name, NULL = default
    max_attempts     INTEGER     NOT NULL CHECK (max_attempts >= 1),
    idempotency_key  TEXT,
    metadata         JSONB       NOT NULL DEFAULT '{}',
    status           TEXT        NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'possible_bug', 'cancelled')),
    attempts         INTEGER     NOT NULL DEFAULT 0,                 -- claims so far
    run_at           TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ,
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
    task_id     UUID        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    number      INTEGER     NOT NULL,
    worker      TEXT        NOT NULL,
    lease_token UUID        NOT NULL,
    outcome     TEXT        NOT NULL CHECK (outcome IN ('running', 'completed', 'failed', 'possible_bug', 'abandoned', 'cancelled')),
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    model       TEXT,
    tokens_in   BIGINT      NOT NULL DEFAULT 0,
    tokens_out  BIGINT      NOT NULL DEFAULT 0,
    cost_usd    DOUBLE PRECISION,
    latency_ms  BIGINT,
    findings    JSONB       NOT NULL DEFAULT '[]',
    error_kind  TEXT,
    error       TEXT,
    commit_sha  TEXT,
    patch       TEXT,
    PRIMARY KEY (task_id, number)
);
