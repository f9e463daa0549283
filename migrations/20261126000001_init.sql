-- Initial schema: tenants and their configuration, the software repository (module and set
-- types, modules, artifacts as external references, distribution sets), targets, actions with
-- their status history, and the transactional outbox/inbox of the DMF adapter.
--
-- Times visible through the API are epoch milliseconds (hawkBit's convention), taken from the
-- database clock so that several service instances agree on them.

CREATE FUNCTION epoch_ms() RETURNS bigint LANGUAGE sql STABLE
AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;

CREATE TABLE tenant (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name = upper(name) AND length(name) BETWEEN 1 AND 40),
    created_at  bigint NOT NULL DEFAULT epoch_ms()
);

CREATE TABLE tenant_config (
    tenant_id         bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    key               text NOT NULL,
    value             jsonb NOT NULL,
    created_at        bigint NOT NULL DEFAULT epoch_ms(),
    created_by        text NOT NULL,
    last_modified_at  bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by  text NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE software_module_type (
    id                 bigserial PRIMARY KEY,
    tenant_id          bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    key                text NOT NULL,
    name               text NOT NULL,
    description        text,
    colour             text,
    max_assignments    integer NOT NULL DEFAULT 1 CHECK (max_assignments >= 1),
    deleted            boolean NOT NULL DEFAULT false,
    created_at         bigint NOT NULL DEFAULT epoch_ms(),
    created_by         text NOT NULL,
    last_modified_at   bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by   text NOT NULL,
    opt_lock_revision  bigint NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, key),
    UNIQUE (tenant_id, name)
);

CREATE TABLE distribution_set_type (
    id                 bigserial PRIMARY KEY,
    tenant_id          bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    key                text NOT NULL,
    name               text NOT NULL,
    description        text,
    colour             text,
    deleted            boolean NOT NULL DEFAULT false,
    created_at         bigint NOT NULL DEFAULT epoch_ms(),
    created_by         text NOT NULL,
    last_modified_at   bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by   text NOT NULL,
    opt_lock_revision  bigint NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, key),
    UNIQUE (tenant_id, name)
);

-- Which module types a set type takes, and whether each is mandatory.
CREATE TABLE distribution_set_type_element (
    ds_type_id  bigint NOT NULL REFERENCES distribution_set_type (id) ON DELETE CASCADE,
    sm_type_id  bigint NOT NULL REFERENCES software_module_type (id) ON DELETE CASCADE,
    mandatory   boolean NOT NULL,
    PRIMARY KEY (ds_type_id, sm_type_id)
);

CREATE TABLE software_module (
    id                 bigserial PRIMARY KEY,
    tenant_id          bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    type_id            bigint NOT NULL REFERENCES software_module_type (id),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    version            text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    vendor             text CHECK (length(vendor) <= 256),
    description        text CHECK (length(description) <= 512),
    encrypted          boolean NOT NULL DEFAULT false,
    locked             boolean NOT NULL DEFAULT false,
    -- Soft delete: a module still referenced by a distribution set keeps its row.
    deleted            boolean NOT NULL DEFAULT false,
    created_at         bigint NOT NULL DEFAULT epoch_ms(),
    created_by         text NOT NULL,
    last_modified_at   bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by   text NOT NULL,
    opt_lock_revision  bigint NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, type_id, name, version)
);

-- Module metadata; only `target_visible` entries are sent to devices.
CREATE TABLE software_module_metadata (
    sm_id           bigint NOT NULL REFERENCES software_module (id) ON DELETE CASCADE,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    value           text NOT NULL CHECK (length(value) <= 4000),
    target_visible  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (sm_id, key)
);

-- Artifacts are references to files held by a CDN or object store; the URLs are what
-- deployment messages carry.
CREATE TABLE artifact (
    id                bigserial PRIMARY KEY,
    sm_id             bigint NOT NULL REFERENCES software_module (id) ON DELETE CASCADE,
    filename          text NOT NULL CHECK (length(filename) BETWEEN 1 AND 256),
    size              bigint NOT NULL CHECK (size >= 0),
    sha1              text NOT NULL,
    md5               text NOT NULL,
    sha256            text,
    url_https         text,
    url_http          text,
    created_at        bigint NOT NULL DEFAULT epoch_ms(),
    created_by        text NOT NULL,
    last_modified_at  bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by  text NOT NULL,
    UNIQUE (sm_id, filename)
);

CREATE TABLE distribution_set (
    id                       bigserial PRIMARY KEY,
    tenant_id                bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    type_id                  bigint NOT NULL REFERENCES distribution_set_type (id),
    name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    version                  text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    description              text CHECK (length(description) <= 512),
    required_migration_step  boolean NOT NULL DEFAULT false,
    locked                   boolean NOT NULL DEFAULT false,
    valid                    boolean NOT NULL DEFAULT true,
    deleted                  boolean NOT NULL DEFAULT false,
    created_at               bigint NOT NULL DEFAULT epoch_ms(),
    created_by               text NOT NULL,
    last_modified_at         bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by         text NOT NULL,
    opt_lock_revision        bigint NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, name, version)
);

CREATE TABLE distribution_set_module (
    ds_id  bigint NOT NULL REFERENCES distribution_set (id) ON DELETE CASCADE,
    sm_id  bigint NOT NULL REFERENCES software_module (id),
    PRIMARY KEY (ds_id, sm_id)
);
CREATE INDEX distribution_set_module_sm ON distribution_set_module (sm_id);

-- Target types restrict which set types a target accepts; THING_CREATED may name one.
CREATE TABLE target_type (
    id                 bigserial PRIMARY KEY,
    tenant_id          bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    key                text NOT NULL,
    name               text NOT NULL,
    description        text,
    created_at         bigint NOT NULL DEFAULT epoch_ms(),
    created_by         text NOT NULL,
    last_modified_at   bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by   text NOT NULL,
    UNIQUE (tenant_id, key),
    UNIQUE (tenant_id, name)
);

CREATE TABLE target (
    id                      bigserial PRIMARY KEY,
    tenant_id               bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    controller_id           text NOT NULL CHECK (length(controller_id) BETWEEN 1 AND 256),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    description             text CHECK (length(description) <= 512),
    -- amqp:/<exchange> or amqp://<vhost>/<exchange> for DMF devices (dmf-protocol.md §1.5).
    address                 text CHECK (length(address) <= 512),
    security_token          text NOT NULL CHECK (length(security_token) BETWEEN 1 AND 128),
    -- Controller attributes, owned by the device: key -> value (strings).
    attributes              jsonb NOT NULL DEFAULT '{}',
    request_attributes      boolean NOT NULL DEFAULT true,
    update_status           text NOT NULL DEFAULT 'UNKNOWN'
                            CHECK (update_status IN ('UNKNOWN', 'IN_SYNC', 'PENDING', 'ERROR', 'REGISTERED')),
    assigned_ds_id          bigint REFERENCES distribution_set (id),
    installed_ds_id         bigint REFERENCES distribution_set (id),
    installation_date       bigint,
    last_target_query       bigint,
    target_type_id          bigint REFERENCES target_type (id) ON DELETE SET NULL,
    target_group            text CHECK (length(target_group) <= 256),
    -- Automatic confirmation: present (non-null auto_confirm_at) = active.
    auto_confirm_at         bigint,
    auto_confirm_initiator  text,
    auto_confirm_remark     text,
    auto_confirm_by         text,
    created_at              bigint NOT NULL DEFAULT epoch_ms(),
    created_by              text NOT NULL,
    last_modified_at        bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by        text NOT NULL,
    opt_lock_revision       bigint NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, controller_id)
);
CREATE INDEX target_assigned_ds ON target (assigned_ds_id);
CREATE INDEX target_installed_ds ON target (installed_ds_id);

CREATE TABLE action (
    id                    bigserial PRIMARY KEY,
    tenant_id             bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    target_id             bigint NOT NULL REFERENCES target (id) ON DELETE CASCADE,
    ds_id                 bigint NOT NULL REFERENCES distribution_set (id),
    action_type           text NOT NULL CHECK (action_type IN ('FORCED', 'SOFT', 'TIMEFORCED', 'DOWNLOAD_ONLY')),
    active                boolean NOT NULL,
    status                text NOT NULL CHECK (status IN ('FINISHED', 'ERROR', 'WARNING', 'RUNNING',
                          'CANCELED', 'CANCELING', 'RETRIEVED', 'DOWNLOAD', 'SCHEDULED',
                          'CANCEL_REJECTED', 'DOWNLOADED', 'WAIT_FOR_CONFIRMATION')),
    weight                integer NOT NULL DEFAULT 1000 CHECK (weight BETWEEN 0 AND 1000),
    forced_time           bigint NOT NULL DEFAULT 0,
    rollout_id            bigint,
    rollout_group_id      bigint,
    -- Maintenance window (manual assignments only): Quartz cron, HH:mm:ss, +hh:mm.
    mw_schedule           text CHECK (length(mw_schedule) <= 128),
    mw_duration           text CHECK (length(mw_duration) <= 16),
    mw_timezone           text CHECK (length(mw_timezone) <= 8),
    external_ref          text CHECK (length(external_ref) <= 512),
    initiated_by          text NOT NULL,
    last_status_code      integer,
    -- History entries counted against the per-action quota (intermediate reports only).
    intermediate_reports  integer NOT NULL DEFAULT 0,
    created_at            bigint NOT NULL DEFAULT epoch_ms(),
    created_by            text NOT NULL,
    last_modified_at      bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by      text NOT NULL,
    opt_lock_revision     bigint NOT NULL DEFAULT 1
);
-- The open actions of a target: what every dispatch decision reads.
CREATE INDEX action_target_active ON action (target_id) WHERE active;
CREATE INDEX action_target ON action (target_id);
CREATE INDEX action_tenant ON action (tenant_id, id);
CREATE INDEX action_ds ON action (tenant_id, ds_id);

-- Action status history. `messages` is a JSON array of strings (each <= 512 characters).
CREATE TABLE action_status (
    id           bigserial PRIMARY KEY,
    action_id    bigint NOT NULL REFERENCES action (id) ON DELETE CASCADE,
    status       text NOT NULL,
    occurred_at  bigint NOT NULL DEFAULT epoch_ms(),
    code         integer,
    messages     jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX action_status_action ON action_status (action_id, id);

-- Transactional outbox: every message to a connector is written here in the transaction that
-- causes it, and deleted once the broker confirmed its publish. `kind` says how to render it:
--   message  fully rendered at write time (exchange, headers, properties, body);
--   action   the message that represents action_id at publish time (dmf-protocol.md §5.2);
--   target   the message for target_id's current action(s), if any (§5.3 follow-ups);
--   batch    one BATCH_* message for action_ids (batch assignment mode).
CREATE TABLE outbox (
    id                bigserial PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('message', 'action', 'target', 'batch')),
    exchange          text,
    headers           jsonb,
    content_type      text,
    content_encoding  text,
    correlation_id    text,
    body              bytea,
    action_id         bigint,
    target_id         bigint,
    action_ids        bigint[],
    created_at        bigint NOT NULL DEFAULT epoch_ms(),
    -- Publish attempts that failed; a row is dropped (and logged) after a bounded number.
    attempts          integer NOT NULL DEFAULT 0
);

-- Digests of processed inbound messages, consulted for redelivered messages only, so that a
-- message processed before a crash (committed, not yet acked) is not applied twice.
CREATE TABLE inbox (
    digest        bytea PRIMARY KEY,
    processed_at  bigint NOT NULL DEFAULT epoch_ms()
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
