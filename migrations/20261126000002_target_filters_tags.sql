-- Stored target filters, target tags, target metadata and the DS types a target type accepts
-- (rollouts.md §1.1, §1.4).

CREATE TABLE target_filter_query (
    id                       bigserial PRIMARY KEY,
    tenant_id                bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    query                    text NOT NULL CHECK (length(query) BETWEEN 1 AND 1024),
    auto_assign_ds_id        bigint REFERENCES distribution_set (id) ON DELETE SET NULL,
    auto_assign_action_type  text CHECK (auto_assign_action_type IN ('FORCED', 'SOFT', 'DOWNLOAD_ONLY')),
    auto_assign_weight       integer CHECK (auto_assign_weight BETWEEN 0 AND 1000),
    confirmation_required    boolean,
    created_at               bigint NOT NULL DEFAULT epoch_ms(),
    created_by               text NOT NULL,
    last_modified_at         bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by         text NOT NULL,
    opt_lock_revision        bigint NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, name)
);

CREATE TABLE target_tag (
    id                 bigserial PRIMARY KEY,
    tenant_id          bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    description        text CHECK (length(description) <= 512),
    colour             text CHECK (length(colour) <= 16),
    created_at         bigint NOT NULL DEFAULT epoch_ms(),
    created_by         text NOT NULL,
    last_modified_at   bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by   text NOT NULL,
    opt_lock_revision  bigint NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, name)
);

CREATE TABLE target_tag_assignment (
    tag_id     bigint NOT NULL REFERENCES target_tag (id) ON DELETE CASCADE,
    target_id  bigint NOT NULL REFERENCES target (id) ON DELETE CASCADE,
    PRIMARY KEY (tag_id, target_id)
);
CREATE INDEX target_tag_assignment_target ON target_tag_assignment (target_id);

CREATE TABLE target_metadata (
    target_id  bigint NOT NULL REFERENCES target (id) ON DELETE CASCADE,
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    value      text NOT NULL CHECK (length(value) <= 4000),
    PRIMARY KEY (target_id, key)
);

-- A target of a type is compatible with a DS only when the DS type is listed here (§1.1).
CREATE TABLE target_type_ds_type (
    target_type_id  bigint NOT NULL REFERENCES target_type (id) ON DELETE CASCADE,
    ds_type_id      bigint NOT NULL REFERENCES distribution_set_type (id) ON DELETE CASCADE,
    PRIMARY KEY (target_type_id, ds_type_id)
);

ALTER TABLE target_type ADD COLUMN colour text CHECK (length(colour) <= 16);
ALTER TABLE target_type ADD COLUMN opt_lock_revision bigint NOT NULL DEFAULT 1;

CREATE INDEX target_tenant_created ON target (tenant_id, created_at);
