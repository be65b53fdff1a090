-- Accounts, channels, prices, the ledger and the call log.
-- Amounts are integer quota units; times are milliseconds since the Unix
-- epoch; ratios are millionths (1000000 = 1.0); lists are JSON arrays.
-- Kept in step with ../postgres/0001_accounts_and_ledger.sql: the two differ
-- only where the dialects do (row ids).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active',
    created_at  BIGINT NOT NULL
);

CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    ratio       BIGINT NOT NULL CHECK (ratio >= 0),
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    group_id    TEXT NOT NULL REFERENCES groups (id),
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active',
    balance     BIGINT NOT NULL CHECK (balance >= 0),
    created_at  BIGINT NOT NULL
);
CREATE INDEX users_by_tenant ON users (tenant_id);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    digest      TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL DEFAULT 'active',
    expires_at  BIGINT,
    models      TEXT NOT NULL DEFAULT '[]',
    tags        TEXT NOT NULL DEFAULT '[]',
    quota_cap   BIGINT CHECK (quota_cap >= 0),
    used        BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
    created_at  BIGINT NOT NULL
);
CREATE INDEX api_keys_by_user ON api_keys (user_id);
CREATE INDEX api_keys_by_prefix ON api_keys (prefix);

CREATE TABLE channels (
    id          TEXT PRIMARY KEY,
    protocol    TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    api_key     TEXT,
    api_key_env TEXT,
    models      TEXT NOT NULL,
    model_map   TEXT NOT NULL DEFAULT '{}',
    weight      BIGINT NOT NULL DEFAULT 1,
    priority    BIGINT NOT NULL DEFAULT 0,
    tags        TEXT NOT NULL DEFAULT '[]',
    status      TEXT NOT NULL DEFAULT 'active',
    created_at  BIGINT NOT NULL
);

CREATE TABLE prices (
    model             TEXT PRIMARY KEY,
    model_ratio       BIGINT NOT NULL CHECK (model_ratio >= 0),
    completion_ratio  BIGINT NOT NULL CHECK (completion_ratio >= 0),
    cached_ratio      BIGINT NOT NULL CHECK (cached_ratio >= 0),
    cache_write_ratio BIGINT NOT NULL CHECK (cache_write_ratio >= 0),
    per_call          BIGINT CHECK (per_call >= 0),
    created_at        BIGINT NOT NULL
);

-- Pre-deductions not yet settled. A row lives from admission to settlement;
-- rows left by a process that died are reconciled when it starts again.
CREATE TABLE holds (
    request_id  TEXT PRIMARY KEY,
    instance    TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    model       TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    stream      BIGINT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount >= 0),
    created_at  BIGINT NOT NULL
);
CREATE INDEX holds_by_instance ON holds (instance);

-- Every change of a balance that is not a call's charge: top-ups and
-- adjustments, with who made them and why.
CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT NOT NULL,
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (user_id, id);

-- One row per call that reached admission: what it used, what it cost and
-- how it ended. `charge` is what left the balance for this call.
CREATE TABLE call_logs (
    request_id          TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    channel             TEXT,
    model               TEXT NOT NULL,
    protocol            TEXT NOT NULL,
    stream              BIGINT NOT NULL,
    status              BIGINT NOT NULL,
    ending              TEXT NOT NULL,
    error               TEXT,
    prompt_tokens       BIGINT NOT NULL,
    completion_tokens   BIGINT NOT NULL,
    cached_tokens       BIGINT NOT NULL,
    cache_write_tokens  BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    usage_source        TEXT NOT NULL,
    charge              BIGINT NOT NULL CHECK (charge >= 0),
    priced              BIGINT NOT NULL CHECK (priced >= 0),
    held                BIGINT NOT NULL,
    latency_ms          BIGINT NOT NULL,
    ttft_ms             BIGINT,
    created_at          BIGINT NOT NULL
);
CREATE INDEX call_logs_by_time ON call_logs (created_at);
CREATE INDEX call_logs_by_user ON call_logs (user_id, created_at);
CREATE INDEX call_logs_by_key ON call_logs (key_id, created_at);
