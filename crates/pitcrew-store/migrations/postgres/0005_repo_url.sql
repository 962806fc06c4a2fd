-- Where the task's repository can be cloned from (its remote, without credentials), so that a
-- worker whose clone is elsewhere, or who has none, can find or make one.
ALTER TABLE tasks ADD COLUMN repo_url TEXT;
