-- Gallery schema 1 on PostgreSQL: the tables, keys and indexes of
-- migrations/0001_init.sql (SQLite) in PostgreSQL's types. Applied in one
-- transaction under an advisory lock; gallery_schema_version records it.

-- Content-addressed images: one row per distinct PNG, shared by entries.
CREATE TABLE images (
  sha256   TEXT PRIMARY KEY CHECK (length(sha256) = 64),
  png      BYTEA NOT NULL,
  width    INTEGER NOT NULL,
  height   INTEGER NOT NULL,
  channels INTEGER NOT NULL
);
-- PNGs are compressed already: store them out of line without trying again.
ALTER TABLE images ALTER COLUMN png SET STORAGE EXTERNAL;

CREATE TABLE entries (
  id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  slug              TEXT NOT NULL UNIQUE,
  delete_hash       BYTEA NOT NULL CHECK (octet_length(delete_hash) = 32),
  kind              TEXT NOT NULL CHECK (kind IN ('run', 'sweep', 'matrix')),
  created_at        BIGINT NOT NULL, -- Unix milliseconds
  title             TEXT NOT NULL,
  gibbon_version    TEXT NOT NULL,
  model             TEXT NOT NULL,   -- shown in the index: first attacked model
  attack            TEXT NOT NULL,
  eps               DOUBLE PRECISION NOT NULL,
  eps_unit          TEXT NOT NULL,
  linf              DOUBLE PRECISION NOT NULL,
  linf_measured     DOUBLE PRECISION, -- /255, between the stored images
  seed              BIGINT NOT NULL,
  original_label    TEXT NOT NULL,
  adversarial_label TEXT NOT NULL,
  original_sha      TEXT REFERENCES images (sha256),
  adversarial_sha   TEXT REFERENCES images (sha256),
  step_count        INTEGER NOT NULL, -- rows in steps, to prove an entry is whole
  model_count       INTEGER NOT NULL, -- rows in entry_models
  record            TEXT NOT NULL     -- JSON as written (not jsonb: params keep their key order)
);

-- Keyset pagination, newest first, for each filter: (created_at, id) < cursor.
CREATE INDEX entries_newest ON entries (created_at, id);
CREATE INDEX entries_attack ON entries (attack, created_at, id);
CREATE INDEX entries_eps ON entries (eps, created_at, id);
CREATE INDEX entries_attack_eps ON entries (attack, eps, created_at, id);
CREATE INDEX entries_kind ON entries (kind, created_at, id);
-- Finding whether an image is still used when an entry is deleted.
CREATE INDEX entries_original_sha ON entries (original_sha);
CREATE INDEX entries_adversarial_sha ON entries (adversarial_sha);

-- created_at, attack and eps are copies of the entry's: pages filtered by model
-- (and attack, eps) walk one of these indexes and read exactly one page of rows.
CREATE TABLE entry_models (
  entry_id   BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
  position   INTEGER NOT NULL,
  name       TEXT NOT NULL,
  sha256     TEXT NOT NULL,
  attacked   BOOLEAN NOT NULL,
  created_at BIGINT NOT NULL,
  attack     TEXT NOT NULL,
  eps        DOUBLE PRECISION NOT NULL,
  eps_unit   TEXT NOT NULL,
  PRIMARY KEY (entry_id, position),
  UNIQUE (entry_id, name)
);
CREATE INDEX entry_models_name ON entry_models (name, created_at, entry_id);
CREATE INDEX entry_models_name_attack ON entry_models (name, attack, created_at, entry_id);
CREATE INDEX entry_models_name_attack_eps ON entry_models (name, attack, eps, created_at, entry_id);
CREATE INDEX entry_models_name_eps ON entry_models (name, eps, created_at, entry_id);

CREATE TABLE steps (
  entry_id BIGINT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
  step     INTEGER NOT NULL,
  loss     DOUBLE PRECISION NOT NULL,
  top1     TEXT NOT NULL, -- JSON [{model, label, prob}]
  PRIMARY KEY (entry_id, step)
);

-- Filter choices with their entry counts, kept up to date by save and delete so
-- the index page never scans entries to list them.
CREATE TABLE facets (
  facet TEXT NOT NULL CHECK (facet IN ('model', 'attack', 'eps')),
  value TEXT NOT NULL,
  count INTEGER NOT NULL CHECK (count > 0),
  PRIMARY KEY (facet, value)
);
