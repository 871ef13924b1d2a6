-- tsunagi schema, PostgreSQL: the supervisors' attention queue: every place where offline work collided, arrived late,
-- may duplicate another household, or was refused. Raised at sync time, in the transaction
-- that stores the changes; resolved by a supervisor.
CREATE TABLE attention (
    item_id       TEXT PRIMARY KEY,
    municipality  TEXT NOT NULL REFERENCES municipalities (code),
    case_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    subject       TEXT NOT NULL,
    detail        TEXT NOT NULL,
    raised_at     TIMESTAMP NOT NULL,
    raised_by     TEXT,
    resolved_at   TIMESTAMP,
    resolved_by   TEXT,
    resolution    TEXT
);
CREATE INDEX attention_queue ON attention (municipality, resolved_at, raised_at);
CREATE INDEX attention_case ON attention (case_id, kind, subject);

-- A case merged into another (a duplicate household): its id and number lead to the survivor.
CREATE TABLE case_redirects (
    case_id       TEXT PRIMARY KEY,
    merged_into   TEXT NOT NULL,
    municipality  TEXT NOT NULL REFERENCES municipalities (code),
    case_number   TEXT,
    merged_at     TIMESTAMP NOT NULL,
    merged_by     TEXT NOT NULL
);
CREATE INDEX case_redirects_number ON case_redirects (municipality, case_number);

-- A merged case is no longer listed or sent to devices.
ALTER TABLE cases ADD COLUMN merged_into TEXT;
