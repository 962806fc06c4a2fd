-- Webhook deliveries: one row per event and endpoint, written in the same transaction as what
-- the event reports (a task's end), so an event is never lost between the two. Dispatchers
-- lease due rows, POST them and record the outcome. Same table and rules as the SQLite schema.
CREATE TABLE webhook_deliveries (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         UUID        NOT NULL,          -- UUID v7, the same on every attempt
    event_type       TEXT        NOT NULL,          -- task.completed, …, run.finished
    task_id          UUID,                          -- the task a task.* event is about
    url              TEXT        NOT NULL,
    -- TEXT, not JSONB: the body is signed, so it must come back byte for byte as written.
    body             TEXT        NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER     NOT NULL DEFAULT 0, -- attempts started
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT,
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ,
    last_status_code INTEGER,                       -- the HTTP status of the last answer
    last_error       TEXT,                          -- why the last attempt failed
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,                   -- when it was delivered or given up
    UNIQUE (event_id, url)
);
-- What a dispatcher claims: pending rows by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, seq)
    WHERE status = 'pending';
-- `pitcrew metrics --since` counts the deliveries of a window.
CREATE INDEX webhook_deliveries_by_creation ON webhook_deliveries (created_at);
