ALTER TABLE device_cases DROP COLUMN synced_clock;
ALTER TABLE device_cases DROP COLUMN synced_response;
ALTER TABLE device_cases DROP COLUMN purge_sent;
ALTER TABLE device_cases DROP COLUMN sent_whole;
ALTER TABLE devices DROP COLUMN sync_responses;
DROP INDEX changes_case_clock;
ALTER TABLE changes DROP COLUMN clock;
ALTER TABLE documents DROP COLUMN clock;
DROP TABLE sync_clock;
