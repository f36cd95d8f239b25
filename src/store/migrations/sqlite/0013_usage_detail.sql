-- Usage that tells the truth (docs/portal.md, Usage): response times to the
-- microsecond, and failures by reason. Rows counted before this keep their
-- failures without a reason (shown as unclassified) and their whole
-- milliseconds, moved to microseconds.
ALTER TABLE usage ADD COLUMN total_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN rate_limited INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN no_credits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN api_error INTEGER NOT NULL DEFAULT 0;
UPDATE usage SET total_us = total_ms * 1000;
