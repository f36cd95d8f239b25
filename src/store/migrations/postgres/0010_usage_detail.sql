-- Usage that tells the truth (docs/portal.md, Usage): response times to the
-- microsecond, and failures by reason. Rows counted before this keep their
-- failures without a reason (shown as unclassified) and their whole
-- milliseconds, moved to microseconds.
-- (The same model as SQLite's migration 0013.)
ALTER TABLE usage ADD COLUMN total_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN rate_limited BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN no_credits BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN refused BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN api_error BIGINT NOT NULL DEFAULT 0;
UPDATE usage SET total_us = total_ms * 1000;
