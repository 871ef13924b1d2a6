-- tsunagi schema, SQLite: the supervisors' API: richer projections (visit logs, figures, filters), reviews, the
-- three forms and their referrals, and meetings with their agendas and members.
-- Projections are rebuilt from the case documents: after this migration, run
-- `tsunagi admin reproject` once to fill the new columns of cases stored before it.

-- Visit logs and figures read these without loading documents. `local_date` is the day
-- the activity started, in Asia/Tokyo (figures are counted per local month).
ALTER TABLE activities ADD COLUMN local_date TEXT NOT NULL DEFAULT '';
ALTER TABLE activities ADD COLUMN letter_left BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE activities ADD COLUMN channel TEXT;
ALTER TABLE activities ADD COLUMN agency TEXT;
ALTER TABLE activities ADD COLUMN narrative TEXT NOT NULL DEFAULT '';
ALTER TABLE activities ADD COLUMN municipality TEXT NOT NULL DEFAULT '';
ALTER TABLE activities ADD COLUMN area TEXT;
CREATE INDEX activities_municipality_started ON activities (municipality, started_at DESC, activity_id DESC);
CREATE INDEX activities_municipality_date ON activities (municipality, local_date);

-- The topics of consultations (one consultation can have several).
CREATE TABLE activity_topics (
    activity_id  TEXT NOT NULL,
    case_id      TEXT NOT NULL REFERENCES documents (case_id),
    topic        TEXT NOT NULL,
    PRIMARY KEY (activity_id, topic)
);
CREATE INDEX activity_topics_case ON activity_topics (case_id);

-- The last non-voided activity of a case, for "no contact for N days".
ALTER TABLE cases ADD COLUMN last_activity_at TIMESTAMP;
CREATE INDEX cases_municipality_status ON cases (municipality, status);

-- Concern tags of every household member, for the case list's filter.
CREATE TABLE case_concerns (
    case_id  TEXT NOT NULL REFERENCES documents (case_id),
    tag      TEXT NOT NULL,
    PRIMARY KEY (case_id, tag)
);
CREATE INDEX case_concerns_tag ON case_concerns (tag);

CREATE TABLE reviews (
    review_id    TEXT PRIMARY KEY,
    case_id      TEXT NOT NULL REFERENCES documents (case_id),
    activity_id  TEXT NOT NULL,
    by_staff     TEXT NOT NULL,
    at           TIMESTAMP NOT NULL,
    comment      TEXT NOT NULL
);
CREATE INDEX reviews_case ON reviews (case_id);
CREATE INDEX reviews_activity ON reviews (activity_id);

-- Form 1 (様式第1号), form 2 (様式第2号), form 2-2 (様式第2-2号).
CREATE TABLE plans (
    plan_id             TEXT PRIMARY KEY,
    case_id             TEXT NOT NULL REFERENCES documents (case_id),
    round               INTEGER NOT NULL,
    author              TEXT NOT NULL,
    drafted_on          TEXT NOT NULL,
    period_until        TEXT,
    next_monitoring_on  TEXT
);
CREATE INDEX plans_case ON plans (case_id);

CREATE TABLE evaluations (
    evaluation_id  TEXT PRIMARY KEY,
    case_id        TEXT NOT NULL REFERENCES documents (case_id),
    round          INTEGER NOT NULL,
    evaluator      TEXT NOT NULL,
    evaluated_on   TEXT NOT NULL,
    wish           TEXT
);
CREATE INDEX evaluations_case ON evaluations (case_id);

CREATE TABLE decisions (
    decision_id   TEXT PRIMARY KEY,
    case_id       TEXT NOT NULL REFERENCES documents (case_id),
    meeting_on    TEXT NOT NULL,
    verdict       TEXT NOT NULL,
    referred_on   BOOLEAN NOT NULL,
    decided_on    TEXT NOT NULL
);
CREATE INDEX decisions_case ON decisions (case_id);

-- Referral destinations (つなぎ先) of meeting decisions, for the monthly referral table.
CREATE TABLE referrals (
    decision_id   TEXT NOT NULL,
    case_id       TEXT NOT NULL REFERENCES documents (case_id),
    municipality  TEXT NOT NULL,
    destination   TEXT NOT NULL,
    decided_on    TEXT NOT NULL,
    PRIMARY KEY (decision_id, destination)
);
CREATE INDEX referrals_municipality_date ON referrals (municipality, decided_on);

-- Meetings (重層的支援会議 / 支援会議 / ブロック・エリア・ゼネラル会議), their agenda and members.
CREATE TABLE meetings (
    meeting_id    TEXT PRIMARY KEY,
    municipality  TEXT NOT NULL REFERENCES municipalities (code),
    kind          TEXT NOT NULL,
    title         TEXT NOT NULL,
    held_on       TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    ended_at      TIMESTAMP
);
CREATE INDEX meetings_municipality ON meetings (municipality, held_on);

CREATE TABLE meeting_cases (
    meeting_id  TEXT NOT NULL REFERENCES meetings (meeting_id),
    case_id     TEXT NOT NULL REFERENCES documents (case_id),
    PRIMARY KEY (meeting_id, case_id)
);
CREATE INDEX meeting_cases_case ON meeting_cases (case_id);

CREATE TABLE meeting_members (
    meeting_id  TEXT NOT NULL REFERENCES meetings (meeting_id),
    staff_id    TEXT NOT NULL REFERENCES staff (id),
    PRIMARY KEY (meeting_id, staff_id)
);
CREATE INDEX meeting_members_staff ON meeting_members (staff_id);

CREATE INDEX audit_log_staff ON audit_log (staff_id, at);
CREATE INDEX audit_log_action ON audit_log (action, at);
