-- tsunagi schema, SQLite: the visit log's usual filters inside its index.
-- GET /v1/visits pages newest first (started_at DESC, activity_id DESC) within the
-- municipality, and filters by the day in Japan (local_date), area and counsellor. With the
-- index of 000002 every row the page skips is read from the table to test those filters: a
-- month's page over a million activities read hundreds of thousands of rows (seconds). This
-- index is the same ordered index with the filter columns as trailing keys, so they are
-- tested on the index entries and only rows that match are read. It replaces the narrower
-- one, which it serves in full.
DROP INDEX activities_municipality_started;
CREATE INDEX activities_municipality_started_filters
    ON activities (municipality, started_at DESC, activity_id DESC, local_date, area, recorded_by);
