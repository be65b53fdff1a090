-- Uploaded plugin bundles and which version of each is active; what a
-- tenant may upload and its admin credentials; the pricing behind each
-- charge; the admin audit log. A scope is '' for operator-wide bundles,
-- else a tenant id.
-- Kept in step with ../sqlite/0002_plugins_tenants_and_audit.sql: the two
-- differ only where the dialects do (row ids, byte strings).

CREATE TABLE plugin_bundles (
    id            BIGSERIAL PRIMARY KEY,
    scope         TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    manifest      TEXT NOT NULL,
    component     BYTEA NOT NULL,
    uploaded_by   TEXT NOT NULL,
    uploaded_at   BIGINT NOT NULL,
    UNIQUE (scope, name, version)
);

-- Append-only: the newest row of a scope and slot says what is active (no
-- bundle: the operator's serves). The operator's slots are bundle names;
-- a tenant's are plugin kinds (its router, its pricing).
CREATE TABLE plugin_activations (
    id            BIGSERIAL PRIMARY KEY,
    scope         TEXT NOT NULL,
    slot          TEXT NOT NULL,
    bundle_id     BIGINT REFERENCES plugin_bundles (id),
    activated_by  TEXT NOT NULL,
    activated_at  BIGINT NOT NULL
);
CREATE INDEX plugin_activations_by_name ON plugin_activations (scope, slot, id);

-- Every admin request that changes something, allowed or not.
CREATE TABLE admin_audit (
    id            BIGSERIAL PRIMARY KEY,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    status        BIGINT NOT NULL,
    content_hash  TEXT
);
CREATE INDEX admin_audit_by_time ON admin_audit (at);

-- What a tenant's own plugins may be and use; a tenant without a row gets
-- the gateway's defaults.
CREATE TABLE tenant_plugin_limits (
    tenant_id         TEXT PRIMARY KEY REFERENCES tenants (id),
    kinds             TEXT NOT NULL,
    max_bundle_bytes  BIGINT NOT NULL,
    memory_mib        BIGINT NOT NULL,
    deadline_ms       BIGINT NOT NULL,
    require_dry_run   BIGINT NOT NULL DEFAULT 0
);

-- Admin credentials scoped to one tenant, stored as SHA-256 digests.
CREATE TABLE tenant_admin_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    prefix      TEXT NOT NULL,
    digest      TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL DEFAULT 'active',
    created_at  BIGINT NOT NULL
);

-- Which pricing plugin version priced a call, and what the operator's
-- pricing charges the tenant for it (the same as `priced` unless the
-- tenant prices its users with a plugin of its own); and what the router
-- and pricing were given (JSON), so a new version can be replayed over it.
ALTER TABLE call_logs ADD COLUMN pricing_plugin TEXT NOT NULL DEFAULT '';
ALTER TABLE call_logs ADD COLUMN operator_priced BIGINT NOT NULL DEFAULT 0;
ALTER TABLE call_logs ADD COLUMN replay TEXT NOT NULL DEFAULT '';
CREATE INDEX call_logs_by_tenant ON call_logs (tenant_id, created_at);

-- Dry runs of uploaded versions over recorded calls, with their report.
CREATE TABLE plugin_dry_runs (
    id            BIGSERIAL PRIMARY KEY,
    scope         TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    clean         BIGINT NOT NULL,
    report        TEXT NOT NULL,
    run_by        TEXT NOT NULL,
    run_at        BIGINT NOT NULL
);
CREATE INDEX plugin_dry_runs_by_version ON plugin_dry_runs (scope, name, version, id);
