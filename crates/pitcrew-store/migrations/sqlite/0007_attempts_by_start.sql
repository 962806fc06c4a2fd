-- `recorded_attempts` (behind `pitcrew metrics --since`) reads the attempts started in a
-- window, in the order they started: an index on the start keeps that from reading every
-- attempt ever made.
CREATE INDEX attempts_by_start ON attempts (started_at);
