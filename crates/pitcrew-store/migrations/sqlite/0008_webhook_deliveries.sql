-- Webhook deliveries: one row per event and endpoint, written in the same transaction as what
-- the event reports (a task's end), so an event is never lost between the two. Dispatchers
-- lease due rows, POST them and record the outcome. Times are unix milliseconds (UTC).
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT    NOT NULL,          -- UUID v7, the same on every attempt
    event_type       TEXT    NOT NULL,          -- task.completed, …, run.finished
    task_id          TEXT,                      -- the task a task.* event is about
    url              TEXT    NOT NULL,
    body             TEXT    NOT NULL,          -- the JSON POSTed, byte for byte (it is signed)
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0, -- attempts started
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    last_status_code INTEGER,                   -- the HTTP status of the last answer
    last_error       TEXT,                      -- why the last attempt failed
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,                   -- when it was delivered or given up
    UNIQUE (event_id, url)
);
-- What a dispatcher claims: pending rows by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, seq)
    WHERE status = 'pending';
-- `pitcrew metrics --since` counts the deliveries of a window.
CREATE INDEX webhook_deliveries_by_creation ON webhook_deliveries (created_at);
