//! The database schema, as numbered migrations applied at start-up (`PRAGMA user_version`).
//!
//! Append new migrations; never edit one that has shipped. A database written by a newer Rapport
//! (a higher version than this list knows) is refused rather than guessed at.

pub const MIGRATIONS: &[&str] = &[
    // 1: organizations, the customer store, audit.
    r#"
    CREATE TABLE orgs (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE branches (
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        code TEXT NOT NULL,
        name TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (org_id, code)
    ) STRICT;

    CREATE TABLE distributors (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        source TEXT NOT NULL,
        external_id TEXT NOT NULL,
        name TEXT NOT NULL,
        sponsor_id INTEGER REFERENCES distributors(id),
        rank TEXT,
        status TEXT NOT NULL DEFAULT 'active',
        branch TEXT,
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (org_id, source, external_id)
    ) STRICT;
    CREATE INDEX distributors_sponsor ON distributors(org_id, sponsor_id);

    -- AUTOINCREMENT: a merged-away or deleted customer's id is never given to someone else.
    CREATE TABLE customers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        name TEXT,
        email TEXT,
        phone TEXT,
        branch TEXT,
        distributor_id INTEGER REFERENCES distributors(id),
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX customers_org ON customers(org_id, id);
    CREATE INDEX customers_email ON customers(org_id, email);
    CREATE INDEX customers_phone ON customers(org_id, phone);
    CREATE INDEX customers_branch ON customers(org_id, branch);

    CREATE TABLE customer_ids (
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        source TEXT NOT NULL,
        external_id TEXT NOT NULL,
        customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        PRIMARY KEY (org_id, source, external_id)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX customer_ids_customer ON customer_ids(customer_id);

    CREATE TABLE customer_tags (
        customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (customer_id, tag)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE consents (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        purpose TEXT NOT NULL,
        channel TEXT,
        basis TEXT NOT NULL,
        given_at INTEGER NOT NULL,
        withdrawn_at INTEGER,
        source TEXT NOT NULL
    ) STRICT;
    CREATE INDEX consents_customer ON consents(customer_id);

    CREATE TABLE interactions (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        customer_id INTEGER NOT NULL REFERENCES customers(id),
        kind TEXT NOT NULL,
        channel TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        external_id TEXT,
        occurred_at INTEGER NOT NULL,
        amount_minor INTEGER,
        currency TEXT,
        subject TEXT,
        body TEXT,
        attributes TEXT NOT NULL DEFAULT '{}',
        ticket_status TEXT,
        ticket_category TEXT,
        due_at INTEGER,
        resolution TEXT,
        closed_at INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX interactions_external ON interactions(org_id, source, external_id)
        WHERE external_id IS NOT NULL;
    CREATE INDEX interactions_timeline ON interactions(customer_id, occurred_at DESC, id DESC);

    CREATE TABLE scores (
        customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        plugin TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL,
        label TEXT,
        explanation TEXT,
        computed_at INTEGER NOT NULL,
        PRIMARY KEY (customer_id, plugin, name)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE score_history (
        customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        plugin TEXT NOT NULL,
        name TEXT NOT NULL,
        value REAL,
        label TEXT,
        computed_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX score_history_customer ON score_history(customer_id, plugin, name, computed_at);

    CREATE TABLE segments (
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        name TEXT NOT NULL,
        filter TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, name)
    ) STRICT;

    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        entity TEXT NOT NULL,
        entity_id INTEGER,
        detail TEXT NOT NULL DEFAULT '{}'
    ) STRICT;
    CREATE INDEX audit_org ON audit(org_id, id);
    CREATE INDEX audit_entity ON audit(org_id, entity, entity_id);
    "#,
    // 2: matching keys for dedupe, erasure, and the record of merges.
    r#"
    ALTER TABLE orgs ADD COLUMN default_country_code TEXT;
    ALTER TABLE customers ADD COLUMN email_norm TEXT;
    ALTER TABLE customers ADD COLUMN phone_norm TEXT;
    ALTER TABLE customers ADD COLUMN erased_at INTEGER;
    CREATE INDEX customers_email_norm ON customers(org_id, email_norm) WHERE email_norm IS NOT NULL;
    CREATE INDEX customers_phone_norm ON customers(org_id, phone_norm) WHERE phone_norm IS NOT NULL;
    CREATE INDEX customers_name_norm ON customers(org_id, lower(trim(name))) WHERE name IS NOT NULL;
    UPDATE customers SET email_norm = lower(trim(email)) WHERE instr(email, '@') > 1;
    UPDATE customers SET phone_norm =
        replace(replace(replace(replace(replace(trim(phone), ' ', ''), '-', ''), '(', ''), ')', ''), '.', '')
        WHERE phone IS NOT NULL;

    -- A merged-away customer's id keeps resolving to the customer it was merged into.
    CREATE TABLE customer_merges (
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        removed_id INTEGER NOT NULL,
        kept_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        PRIMARY KEY (org_id, removed_id)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 3: plugins per organization and what the write pipeline keeps: versions (the component
    // bytes once per content hash), execution traces, recent changes for dry-runs, fitted scorer
    // models, jobs, the outbox of follow-up messages.
    r#"
    CREATE TABLE components (
        hash TEXT PRIMARY KEY,
        bytes BLOB NOT NULL,
        world TEXT NOT NULL,
        contract TEXT NOT NULL,
        config_schema TEXT,
        created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE plugins (
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        name TEXT NOT NULL,
        world TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 0,
        position INTEGER NOT NULL,
        failure_mode TEXT NOT NULL DEFAULT 'closed',
        config TEXT NOT NULL DEFAULT '{}',
        active_version INTEGER NOT NULL,
        shadow_version INTEGER,
        disabled_reason TEXT,
        PRIMARY KEY (org_id, name)
    ) STRICT;

    CREATE TABLE plugin_versions (
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        plugin TEXT NOT NULL,
        version INTEGER NOT NULL,
        hash TEXT NOT NULL REFERENCES components(hash),
        author_version TEXT,
        installed_at INTEGER NOT NULL,
        installed_by TEXT NOT NULL,
        PRIMARY KEY (org_id, plugin, version)
    ) STRICT;

    CREATE TABLE plugin_traces (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        plugin TEXT NOT NULL,
        version INTEGER NOT NULL,
        world TEXT NOT NULL,
        hook TEXT NOT NULL,
        change_digest TEXT,
        customer_id INTEGER,
        outcome TEXT NOT NULL,
        summary TEXT,
        duration_us INTEGER NOT NULL,
        fuel INTEGER,
        logs TEXT NOT NULL DEFAULT '[]',
        error TEXT,
        at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX plugin_traces_plugin ON plugin_traces(org_id, plugin, id);
    CREATE INDEX plugin_traces_customer ON plugin_traces(org_id, customer_id) WHERE customer_id IS NOT NULL;

    CREATE TABLE change_log (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        customer_id INTEGER,
        change TEXT NOT NULL,
        at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX change_log_org ON change_log(org_id, id);
    CREATE INDEX change_log_customer ON change_log(org_id, customer_id) WHERE customer_id IS NOT NULL;

    CREATE TABLE scorer_models (
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        plugin TEXT NOT NULL,
        version INTEGER NOT NULL,
        model BLOB NOT NULL,
        fitted_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, plugin, version)
    ) STRICT;

    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        total INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        cursor INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX jobs_state ON jobs(state);

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
        channel TEXT NOT NULL,
        template TEXT NOT NULL,
        variables TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        action_key TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (org_id, action_key)
    ) STRICT;
    "#,
    // 4: API keys (stored as hashes) and server settings (the admin token's hash).
    r#"
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    ) STRICT;
    CREATE INDEX api_keys_org ON api_keys(org_id, id);

    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    "#,
    // 5: an agent key may be scoped to one branch or one distributor's customers.
    r#"
    ALTER TABLE api_keys ADD COLUMN scope_branch TEXT;
    ALTER TABLE api_keys ADD COLUMN scope_distributor INTEGER;
    "#,
    // 6: outbound webhooks. An event is stored once, with a delivery row per endpoint that
    // subscribed when it happened; a delivery stays `queued` (retried with backoff) until the
    // endpoint answers 2xx (`delivered`) or the attempts run out (`failed`). `customer_id` is
    // copied onto deliveries so that "nothing for this customer is queued before it" (per-customer
    // order) and erasure are one indexed lookup each.
    r#"
    CREATE TABLE webhook_endpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX webhook_endpoints_org ON webhook_endpoints(org_id, id);

    CREATE TABLE webhook_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        org_id INTEGER NOT NULL REFERENCES orgs(id),
        customer_id INTEGER,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX webhook_events_customer ON webhook_events(org_id, customer_id) WHERE customer_id IS NOT NULL;
    CREATE INDEX webhook_events_created ON webhook_events(created_at);

    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
        event_id INTEGER NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
        customer_id INTEGER,
        state TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_attempt_at INTEGER,
        last_status INTEGER,
        last_error TEXT,
        delivered_at INTEGER,
        created_at INTEGER NOT NULL,
        UNIQUE (event_id, endpoint_id)
    ) STRICT;
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE state = 'queued';
    CREATE INDEX webhook_deliveries_order ON webhook_deliveries(endpoint_id, customer_id, event_id)
        WHERE state = 'queued';
    CREATE INDEX webhook_deliveries_log ON webhook_deliveries(endpoint_id, id);
    "#,
];
