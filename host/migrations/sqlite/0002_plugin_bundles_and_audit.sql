-- Uploaded plugin bundles, which version of each is active, and the admin
-- audit log. A scope is '' for operator-wide bundles, else a tenant id.
-- Kept in step with ../postgres/0002_plugin_bundles_and_audit.sql: the two
-- differ only where the dialects do (row ids, byte strings).

CREATE TABLE plugin_bundles (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    scope         TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    manifest      TEXT NOT NULL,
    component     BLOB NOT NULL,
    uploaded_by   TEXT NOT NULL,
    uploaded_at   BIGINT NOT NULL,
    UNIQUE (scope, name, version)
);

-- Append-only: the newest row of a scope and name says what is active
-- (no bundle: the built-in or folder bundle of that name serves).
CREATE TABLE plugin_activations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    scope         TEXT NOT NULL,
    name          TEXT NOT NULL,
    bundle_id     BIGINT REFERENCES plugin_bundles (id),
    activated_by  TEXT NOT NULL,
    activated_at  BIGINT NOT NULL
);
CREATE INDEX plugin_activations_by_name ON plugin_activations (scope, name, id);

-- Every admin request that changes something, allowed or not.
CREATE TABLE admin_audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    status        BIGINT NOT NULL,
    content_hash  TEXT
);
CREATE INDEX admin_audit_by_time ON admin_audit (at);
