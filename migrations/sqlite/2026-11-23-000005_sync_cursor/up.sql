-- tsunagi schema, SQLite: the sync cursor (docs/protocol.md, section 9).
--
-- One commit clock for the whole database: every transaction that writes a case document
-- takes the next value (UPDATE ... RETURNING, so that transactions take values in the order
-- they commit) and stamps the document and the changes it stored with it. A sync request
-- reads the clock when it starts; the cursor it returns carries that value, and the next
-- request gets, for the cases it does not list, the changes stamped after it.
CREATE TABLE sync_clock (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    value  BIGINT NOT NULL
);
INSERT INTO sync_clock (id, value) VALUES (1, 0);

ALTER TABLE documents ADD COLUMN clock BIGINT NOT NULL DEFAULT 0;
-- NULL only inside the transaction that stores the change, until it is stamped.
ALTER TABLE changes ADD COLUMN clock BIGINT;
UPDATE changes SET clock = 0;
CREATE INDEX changes_case_clock ON changes (case_id, clock);

-- Each sync response a device is sent is numbered; the cursor carries the number, so the
-- server knows which of its responses the device has stored.
ALTER TABLE devices ADD COLUMN sync_responses BIGINT NOT NULL DEFAULT 0;

-- The response that last sent the whole case to the device (it holds the case once it has
-- stored that response or a later one); the response that last told it to purge the case
-- (the row goes once the device has stored that response or a later one); and the last
-- response that brought the device up to date with the case, with the case's clock then
-- (once the device has stored that response, it lacks only what was stamped later).
ALTER TABLE device_cases ADD COLUMN sent_whole BIGINT NOT NULL DEFAULT 0;
ALTER TABLE device_cases ADD COLUMN purge_sent BIGINT;
ALTER TABLE device_cases ADD COLUMN synced_response BIGINT NOT NULL DEFAULT 0;
ALTER TABLE device_cases ADD COLUMN synced_clock BIGINT NOT NULL DEFAULT 0;
