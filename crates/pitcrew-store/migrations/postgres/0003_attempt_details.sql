-- Which run made an attempt, the validated quality of its output, and what happened along
-- the way (iterations, context, rules, coverage, cache hits) as JSON.
ALTER TABLE attempts ADD COLUMN run_id TEXT;
ALTER TABLE attempts ADD COLUMN quality DOUBLE PRECISION;
ALTER TABLE attempts ADD COLUMN details JSONB NOT NULL DEFAULT 'null';
CREATE INDEX attempts_by_run ON attempts (run_id) WHERE run_id IS NOT NULL;
