-- What the router learned about each model, shared by every worker on this store.
CREATE TABLE model_health (
    model                TEXT             PRIMARY KEY, -- the registry name
    consecutive_failures BIGINT           NOT NULL,
    circuit_open_until   TIMESTAMPTZ,
    cooldown_until       TIMESTAMPTZ,
    cooldown_reason      TEXT,
    success_rate         DOUBLE PRECISION NOT NULL,    -- moving averages
    latency_ms           DOUBLE PRECISION NOT NULL,
    quality              DOUBLE PRECISION NOT NULL,
    samples              BIGINT           NOT NULL,
    updated_at           TIMESTAMPTZ      NOT NULL     -- set by the store on every write
);
