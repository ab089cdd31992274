-- Gallery schema 1. Applied in one transaction; PRAGMA user_version records it.

-- Content-addressed images: one row per distinct PNG, shared by entries.
CREATE TABLE images (
  sha256   TEXT PRIMARY KEY CHECK (length(sha256) = 64),
  png      BLOB NOT NULL,
  width    INTEGER NOT NULL,
  height   INTEGER NOT NULL,
  channels INTEGER NOT NULL
);

CREATE TABLE entries (
  id                INTEGER PRIMARY KEY,
  slug              TEXT NOT NULL UNIQUE,
  delete_hash       BLOB NOT NULL CHECK (length(delete_hash) = 32),
  kind              TEXT NOT NULL CHECK (kind IN ('run', 'sweep', 'matrix')),
  created_at        INTEGER NOT NULL, -- Unix milliseconds
  title             TEXT NOT NULL,
  gibbon_version    TEXT NOT NULL,
  model             TEXT NOT NULL,    -- shown in the index: first attacked model
  attack            TEXT NOT NULL,
  eps               REAL NOT NULL,
  eps_unit          TEXT NOT NULL,
  linf              REAL NOT NULL,
  linf_measured     REAL,             -- /255, between the stored images
  seed              INTEGER NOT NULL,
  original_label    TEXT NOT NULL,
  adversarial_label TEXT NOT NULL,
  original_sha      TEXT REFERENCES images (sha256),
  adversarial_sha   TEXT REFERENCES images (sha256),
  step_count        INTEGER NOT NULL, -- rows in steps, to prove an entry is whole
  model_count       INTEGER NOT NULL, -- rows in entry_models
  record            TEXT NOT NULL     -- JSON: params, predictions, timings, payload
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
  entry_id   INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
  position   INTEGER NOT NULL,
  name       TEXT NOT NULL,
  sha256     TEXT NOT NULL,
  attacked   INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  attack     TEXT NOT NULL,
  eps        REAL NOT NULL,
  eps_unit   TEXT NOT NULL,
  PRIMARY KEY (entry_id, position),
  UNIQUE (entry_id, name)
) WITHOUT ROWID;
CREATE INDEX entry_models_name ON entry_models (name, created_at, entry_id);
CREATE INDEX entry_models_name_attack ON entry_models (name, attack, created_at, entry_id);
CREATE INDEX entry_models_name_attack_eps ON entry_models (name, attack, eps, created_at, entry_id);
CREATE INDEX entry_models_name_eps ON entry_models (name, eps, created_at, entry_id);

CREATE TABLE steps (
  entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
  step     INTEGER NOT NULL,
  loss     REAL NOT NULL,
  top1     TEXT NOT NULL, -- JSON [{model, label, prob}]
  PRIMARY KEY (entry_id, step)
) WITHOUT ROWID;

-- Filter choices with their entry counts, kept up to date by save and delete so
-- the index page never scans entries to list them.
CREATE TABLE facets (
  facet TEXT NOT NULL CHECK (facet IN ('model', 'attack', 'eps')),
  value TEXT NOT NULL,
  count INTEGER NOT NULL CHECK (count > 0),
  PRIMARY KEY (facet, value)
) WITHOUT ROWID;
