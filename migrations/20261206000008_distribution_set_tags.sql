-- Distribution set tags (hawkBit's `MgmtDistributionSetTagRestApi`), shaped as target tags: a
-- set carries any number of them. A set tagged `skip-implicit-lock` (or `skip_implicit_lock`,
-- any case) is not locked implicitly (rollouts.md §1.3).
CREATE TABLE distribution_set_tag (
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

CREATE TABLE distribution_set_tag_assignment (
    tag_id  bigint NOT NULL REFERENCES distribution_set_tag (id) ON DELETE CASCADE,
    ds_id   bigint NOT NULL REFERENCES distribution_set (id) ON DELETE CASCADE,
    PRIMARY KEY (tag_id, ds_id)
);
CREATE INDEX distribution_set_tag_assignment_ds ON distribution_set_tag_assignment (ds_id);
