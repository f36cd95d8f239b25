-- Credit refills (docs/configuration.md, Limits and credits): a key's own refill
-- (amount and period, both or neither; NULL: its tier's), and the start of the period
-- it was last refilled in.
ALTER TABLE api_keys ADD COLUMN refill_amount INTEGER CHECK (refill_amount IS NULL OR refill_amount >= 0);
ALTER TABLE api_keys ADD COLUMN refill_every TEXT;
ALTER TABLE api_keys ADD COLUMN refilled_at INTEGER;
