-- tsunagi schema, PostgreSQL. Kept in step with migrations/sqlite: same tables, columns,
-- keys and indexes. Timestamps are UTC (TIMESTAMP without time zone); ids are canonical
-- lowercase UUID text; change hashes and heads are raw bytes.

CREATE TABLE municipalities (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE areas (
    id            TEXT PRIMARY KEY,
    municipality  TEXT NOT NULL REFERENCES municipalities (code),
    code          TEXT NOT NULL,
    name          TEXT NOT NULL,
    UNIQUE (municipality, code)
);

CREATE TABLE organisations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('direct', 'contracted')),
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE staff (
    id               TEXT PRIMARY KEY,
    login            TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    role             TEXT NOT NULL CHECK (role IN ('counsellor', 'supervisor', 'meeting_tablet', 'administrator')),
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    municipality     TEXT NOT NULL REFERENCES municipalities (code),
    area             TEXT,
    password_hash    TEXT NOT NULL,
    active           BOOLEAN NOT NULL,
    failed_logins    INTEGER NOT NULL,
    locked_until     TIMESTAMP,
    created_at       TIMESTAMP NOT NULL
);

CREATE TABLE devices (
    id             TEXT PRIMARY KEY,
    staff_id       TEXT NOT NULL REFERENCES staff (id),
    label          TEXT NOT NULL,
    registered_at  TIMESTAMP NOT NULL,
    revoked_at     TIMESTAMP
);
CREATE INDEX devices_staff ON devices (staff_id);

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    family_id   TEXT NOT NULL,
    token_hash  BYTEA NOT NULL UNIQUE,
    issued_at   TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL,
    used_at     TIMESTAMP,
    revoked_at  TIMESTAMP
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);

-- One row per case document: its current heads and a compacted snapshot.
CREATE TABLE documents (
    case_id         TEXT PRIMARY KEY,
    municipality    TEXT NOT NULL REFERENCES municipalities (code),
    heads           BYTEA NOT NULL,
    snapshot        BYTEA NOT NULL,
    snapshot_seq    BIGINT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);

-- Append-only: every Automerge change ever accepted, with who sent it.
CREATE TABLE changes (
    seq          BIGSERIAL PRIMARY KEY,
    case_id      TEXT NOT NULL REFERENCES documents (case_id),
    hash         BYTEA NOT NULL,
    bytes        BYTEA NOT NULL,
    actor        BYTEA NOT NULL,
    staff_id     TEXT,
    device_id    TEXT,
    received_at  TIMESTAMP NOT NULL,
    UNIQUE (case_id, hash)
);
CREATE INDEX changes_case_seq ON changes (case_id, seq);

-- Case numbers: one counter per municipality and fiscal year, advanced inside the
-- transaction that first stores a case, so numbers have no gaps and no duplicates.
CREATE TABLE case_number_counters (
    municipality  TEXT NOT NULL REFERENCES municipalities (code),
    fiscal_year   INTEGER NOT NULL,
    last_serial   INTEGER NOT NULL,
    PRIMARY KEY (municipality, fiscal_year)
);

-- Projections of the documents, for queries. Rebuilt from the document on every write.
CREATE TABLE cases (
    case_id           TEXT PRIMARY KEY REFERENCES documents (case_id),
    municipality      TEXT NOT NULL REFERENCES municipalities (code),
    case_number       TEXT,
    status            TEXT NOT NULL,
    consent           TEXT NOT NULL,
    area              TEXT,
    primary_assignee  TEXT,
    opened_on         TEXT,
    conflicts         INTEGER NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    UNIQUE (municipality, case_number)
);

CREATE TABLE persons (
    case_id     TEXT NOT NULL REFERENCES documents (case_id),
    person_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    kana        TEXT,
    birth_date  TEXT,
    is_subject  BOOLEAN NOT NULL,
    PRIMARY KEY (case_id, person_id)
);
CREATE INDEX persons_kana_birth ON persons (kana, birth_date);

CREATE TABLE activities (
    activity_id   TEXT PRIMARY KEY,
    case_id       TEXT NOT NULL REFERENCES documents (case_id),
    kind          TEXT NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    recorded_by   TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    place         TEXT NOT NULL,
    outcome       TEXT,
    follow_up_on  TEXT,
    voided        BOOLEAN NOT NULL,
    reviewed      BOOLEAN NOT NULL
);
CREATE INDEX activities_started ON activities (started_at DESC, activity_id);
CREATE INDEX activities_case ON activities (case_id, started_at);
CREATE INDEX activities_recorded_by ON activities (recorded_by, started_at);

CREATE TABLE assignments (
    case_id   TEXT NOT NULL REFERENCES documents (case_id),
    staff_id  TEXT NOT NULL,
    is_primary BOOLEAN NOT NULL,
    PRIMARY KEY (case_id, staff_id)
);
CREATE INDEX assignments_staff ON assignments (staff_id);

-- Which cases each device has received, so an ended assignment lands on its purge list.
CREATE TABLE device_cases (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    case_id    TEXT NOT NULL REFERENCES documents (case_id),
    PRIMARY KEY (device_id, case_id)
);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMP NOT NULL,
    staff_id    TEXT,
    device_id   TEXT,
    case_id     TEXT,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_case ON audit_log (case_id, at);

-- Refused uploads, kept whole for an administrator: nothing is lost, not even refused data.
CREATE TABLE quarantine (
    id           TEXT PRIMARY KEY,
    received_at  TIMESTAMP NOT NULL,
    case_id      TEXT NOT NULL,
    staff_id     TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    code         TEXT NOT NULL,
    violations   TEXT NOT NULL,
    upload       BYTEA NOT NULL,
    decided_at   TIMESTAMP,
    decision     TEXT
);
CREATE INDEX quarantine_undecided ON quarantine (decided_at, received_at);

-- Failed logins per login name, for throttling.
CREATE TABLE login_attempts (
    id           BIGSERIAL PRIMARY KEY,
    login        TEXT NOT NULL,
    attempted_at TIMESTAMP NOT NULL
);
CREATE INDEX login_attempts_login ON login_attempts (login, attempted_at);
