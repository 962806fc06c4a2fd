-- Calls counted under limits every worker of the store shares (a model's or a provider
-- account's requests and tokens per minute, requests per UTC day).
CREATE TABLE rate_events (
    key    TEXT    NOT NULL, -- `model:<name>` or `quota:<name>`
    at     INTEGER NOT NULL, -- ms since the epoch
    tokens INTEGER NOT NULL
);
CREATE INDEX rate_events_by_key ON rate_events (key, at);

-- Budgets the workers of a run share: what they spent, or reserved for calls in flight.
CREATE TABLE budgets (
    key        TEXT    PRIMARY KEY, -- `run:<name>`
    spent_usd  REAL    NOT NULL,
    updated_at INTEGER NOT NULL
);
