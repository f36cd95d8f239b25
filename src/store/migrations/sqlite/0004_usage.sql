-- Per-key usage, aggregated per hour and endpoint (route name), added to in batches.
CREATE TABLE usage (
    key_id     TEXT NOT NULL,
    hour       INTEGER NOT NULL,   -- Unix seconds at the start of the hour
    endpoint   TEXT NOT NULL,
    total      INTEGER NOT NULL DEFAULT 0,
    successful INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    total_ms   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour, endpoint)
);
