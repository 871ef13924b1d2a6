-- tsunagi schema, PostgreSQL: monthly counts per case, for the monthly figures.
-- GET /v1/figures/{fy} used to aggregate every activity of a municipality's fiscal year
-- (a million rows in a large city: seconds). These two tables hold, per case and month in
-- Japan ('YYYY-MM'), the counts the figures add up, over non-voided activities only; the
-- projection rebuilds a case's rows in the transaction that stores its changes, from its
-- `activities` and `activity_topics` rows, so they are never behind them. The figures then
-- read at most one row per case and month.
CREATE TABLE activity_months (
    case_id        TEXT NOT NULL REFERENCES documents (case_id),
    month          TEXT NOT NULL,
    municipality   TEXT NOT NULL,
    consultations  BIGINT NOT NULL,
    visits         BIGINT NOT NULL,
    letters        BIGINT NOT NULL,
    contacts       BIGINT NOT NULL,
    met            BIGINT NOT NULL,
    PRIMARY KEY (case_id, month, municipality)
);
CREATE INDEX activity_months_municipality ON activity_months (municipality, month);

CREATE TABLE activity_month_topics (
    case_id        TEXT NOT NULL REFERENCES documents (case_id),
    month          TEXT NOT NULL,
    municipality   TEXT NOT NULL,
    topic          TEXT NOT NULL,
    n              BIGINT NOT NULL,
    PRIMARY KEY (case_id, month, municipality, topic)
);
CREATE INDEX activity_month_topics_municipality ON activity_month_topics (municipality, month);

-- The counts of the activities already stored.
INSERT INTO activity_months (case_id, month, municipality, consultations, visits, letters, contacts, met)
SELECT case_id, substr(local_date, 1, 7), municipality,
       SUM(CASE WHEN kind = 'consultation' THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = 'visit' THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = 'letter_left' OR (kind = 'visit' AND letter_left) THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = 'contact_attempt' THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = 'visit' AND outcome = 'met' THEN 1 ELSE 0 END)
FROM activities WHERE NOT voided
GROUP BY case_id, substr(local_date, 1, 7), municipality;
INSERT INTO activity_month_topics (case_id, month, municipality, topic, n)
SELECT a.case_id, substr(a.local_date, 1, 7), a.municipality, t.topic, COUNT(*)
FROM activities a JOIN activity_topics t ON t.activity_id = a.activity_id
WHERE a.kind = 'consultation' AND NOT a.voided
GROUP BY a.case_id, substr(a.local_date, 1, 7), a.municipality, t.topic;
