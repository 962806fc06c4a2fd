-- What the router learned about each model, shared by every worker on this store. Times are
-- unix milliseconds (UTC).
CREATE TABLE model_health (
    model                TEXT    PRIMARY KEY,     -- the registry name
    consecutive_failures INTEGER NOT NULL,
    circuit_open_until   INTEGER,
    cooldown_until       INTEGER,
    cooldown_reason      TEXT,
    success_rate         REAL    NOT NULL,        -- moving averages
    latency_ms           REAL    NOT NULL,
    quality              REAL    NOT NULL,
    samples              INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL         -- set by the store on every write
);
