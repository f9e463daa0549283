-- Rollouts, their deployment groups, static group membership, and per-group action counters
-- kept by statement-level triggers (rollouts.md §1.5, §1.6, §8, §10.2).

CREATE TABLE rollout (
    id                     bigserial PRIMARY KEY,
    tenant_id              bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    description            text CHECK (length(description) <= 512),
    target_filter          text NOT NULL CHECK (length(target_filter) BETWEEN 1 AND 1024),
    -- A retry rollout enrols the targets that failed in this rollout instead of a filter.
    retry_of               bigint REFERENCES rollout (id) ON DELETE SET NULL,
    ds_id                  bigint NOT NULL REFERENCES distribution_set (id),
    status                 text NOT NULL CHECK (status IN ('CREATING', 'READY', 'PAUSED', 'STARTING',
                           'STOPPED', 'RUNNING', 'FINISHED', 'DELETING', 'DELETED',
                           'WAITING_FOR_APPROVAL', 'APPROVAL_DENIED', 'STOPPING')),
    action_type            text NOT NULL CHECK (action_type IN ('FORCED', 'SOFT', 'TIMEFORCED', 'DOWNLOAD_ONLY')),
    forced_time            bigint NOT NULL DEFAULT 0,
    start_at               bigint,
    weight                 integer NOT NULL DEFAULT 1000 CHECK (weight BETWEEN 0 AND 1000),
    total_targets          bigint NOT NULL DEFAULT 0,
    groups_created         integer NOT NULL DEFAULT 0,
    deleted                boolean NOT NULL DEFAULT false,
    dynamic                boolean NOT NULL DEFAULT false,
    -- Rollout-level conditions: what dynamic groups appended later inherit.
    success_condition      text NOT NULL,
    success_condition_exp  text NOT NULL,
    success_action         text NOT NULL,
    success_action_exp     text,
    error_condition        text,
    error_condition_exp    text,
    error_action           text,
    error_action_exp       text,
    confirmation_required  boolean NOT NULL DEFAULT false,
    template_suffix        text,
    template_count         bigint,
    -- When dynamic enrolment last found nothing (throttle of §3.7).
    last_empty_enrolment   bigint,
    -- The creator holds APPROVE_ROLLOUT: approval is implicit (§5).
    creator_may_approve    boolean NOT NULL DEFAULT false,
    approval_decided_by    text CHECK (length(approval_decided_by) <= 64),
    approval_remark        text CHECK (length(approval_remark) <= 255),
    created_at             bigint NOT NULL DEFAULT epoch_ms(),
    created_by             text NOT NULL,
    last_modified_at       bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by       text NOT NULL,
    opt_lock_revision      bigint NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, name)
);
CREATE INDEX rollout_tenant_status ON rollout (tenant_id, status);
CREATE INDEX rollout_active ON rollout (id)
    WHERE status IN ('CREATING', 'READY', 'STARTING', 'RUNNING', 'STOPPING', 'DELETING');
CREATE INDEX rollout_ds ON rollout (ds_id);

CREATE TABLE rollout_group (
    id                     bigserial PRIMARY KEY,
    rollout_id             bigint NOT NULL REFERENCES rollout (id) ON DELETE CASCADE,
    parent_id              bigint REFERENCES rollout_group (id) ON DELETE SET NULL,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    description            text CHECK (length(description) <= 512),
    status                 text NOT NULL CHECK (status IN ('READY', 'SCHEDULED', 'FINISHED', 'ERROR',
                           'RUNNING', 'CREATING')),
    dynamic                boolean NOT NULL DEFAULT false,
    success_condition      text NOT NULL,
    success_condition_exp  text NOT NULL,
    success_action         text NOT NULL,
    success_action_exp     text,
    error_condition        text,
    error_condition_exp    text,
    error_action           text,
    error_action_exp       text,
    total_targets          bigint NOT NULL DEFAULT 0,
    target_filter          text NOT NULL DEFAULT '',
    target_percentage      real NOT NULL DEFAULT 100,
    confirmation_required  boolean NOT NULL DEFAULT false,
    -- Members a static group is filled up to, fixed when its filling begins (resumable, §3.5).
    planned_size           bigint,
    -- Counters of the group's actions by status, maintained by the triggers below so that
    -- progress and conditions never count rows (§8, §10.2 [ours]).
    n_scheduled            bigint NOT NULL DEFAULT 0,
    n_running              bigint NOT NULL DEFAULT 0,
    n_downloaded           bigint NOT NULL DEFAULT 0,
    n_finished             bigint NOT NULL DEFAULT 0,
    n_error                bigint NOT NULL DEFAULT 0,
    n_canceled             bigint NOT NULL DEFAULT 0,
    created_at             bigint NOT NULL DEFAULT epoch_ms(),
    created_by             text NOT NULL,
    last_modified_at       bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by       text NOT NULL,
    UNIQUE (rollout_id, name)
);
CREATE INDEX rollout_group_rollout ON rollout_group (rollout_id, id);
CREATE INDEX rollout_group_parent ON rollout_group (parent_id);

-- Members of static groups before their actions exist. No foreign keys: the engine removes
-- memberships with their rollout or target, and per-row checks would double the time of
-- filling a million-target rollout. Readers join `target` and so never see an orphan.
CREATE TABLE rollout_target_group (
    group_id    bigint NOT NULL,
    target_id   bigint NOT NULL,
    rollout_id  bigint NOT NULL,
    PRIMARY KEY (group_id, target_id)
);
CREATE INDEX rollout_target_group_target ON rollout_target_group (target_id, rollout_id);

-- Actions reference their rollout and group without foreign keys, like the tenant below:
-- the engine is the only writer of those columns and deletes actions before their rollout,
-- and each per-row check costs as much as an index insert when a rollout schedules a million
-- actions. The target and distribution set keys stay (cascade and in-use detection).
ALTER TABLE action DROP CONSTRAINT action_tenant_id_fkey;
CREATE INDEX action_group_status ON action (rollout_group_id, status) WHERE rollout_group_id IS NOT NULL;
CREATE INDEX action_rollout_status ON action (rollout_id, status) WHERE rollout_id IS NOT NULL;
-- Group filling walks a tenant's targets in id order.
CREATE INDEX target_tenant_id ON target (tenant_id, id);

-- Per-group counter deltas from one statement's transition tables: a 1,000-row status update
-- costs one aggregate and one UPDATE per touched group, and no-op updates lock nothing.
CREATE FUNCTION rollout_group_apply_deltas() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gs bigint[];
    ss text[];
    ns int[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(rollout_group_id), array_agg(status), array_agg(1) INTO gs, ss, ns
        FROM new_rows WHERE rollout_group_id IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(rollout_group_id), array_agg(status), array_agg(-1) INTO gs, ss, ns
        FROM old_rows WHERE rollout_group_id IS NOT NULL;
    ELSE
        SELECT array_agg(x.g), array_agg(x.s), array_agg(x.n) INTO gs, ss, ns FROM (
            SELECT o.rollout_group_id AS g, o.status AS s, -1 AS n
            FROM old_rows o JOIN new_rows w ON w.id = o.id
            WHERE o.rollout_group_id IS NOT NULL AND o.status IS DISTINCT FROM w.status
            UNION ALL
            SELECT w.rollout_group_id, w.status, 1
            FROM old_rows o JOIN new_rows w ON w.id = o.id
            WHERE w.rollout_group_id IS NOT NULL AND o.status IS DISTINCT FROM w.status
        ) x;
    END IF;
    IF gs IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE rollout_group rg SET
        n_scheduled  = rg.n_scheduled  + d.sch,
        n_running    = rg.n_running    + d.run,
        n_downloaded = rg.n_downloaded + d.dl,
        n_finished   = rg.n_finished   + d.fin,
        n_error      = rg.n_error      + d.err,
        n_canceled   = rg.n_canceled   + d.can
    FROM (
        SELECT g,
            coalesce(sum(n) FILTER (WHERE s = 'SCHEDULED'), 0) AS sch,
            coalesce(sum(n) FILTER (WHERE s NOT IN ('SCHEDULED', 'DOWNLOADED', 'FINISHED', 'ERROR', 'CANCELED')), 0) AS run,
            coalesce(sum(n) FILTER (WHERE s = 'DOWNLOADED'), 0) AS dl,
            coalesce(sum(n) FILTER (WHERE s = 'FINISHED'), 0) AS fin,
            coalesce(sum(n) FILTER (WHERE s = 'ERROR'), 0) AS err,
            coalesce(sum(n) FILTER (WHERE s = 'CANCELED'), 0) AS can
        FROM unnest(gs, ss, ns) AS u(g, s, n) GROUP BY g
    ) d
    WHERE rg.id = d.g AND (d.sch <> 0 OR d.run <> 0 OR d.dl <> 0 OR d.fin <> 0 OR d.err <> 0 OR d.can <> 0);
    RETURN NULL;
END $$;

CREATE TRIGGER action_group_counts_insert AFTER INSERT ON action
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rollout_group_apply_deltas();
CREATE TRIGGER action_group_counts_update AFTER UPDATE ON action
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rollout_group_apply_deltas();
CREATE TRIGGER action_group_counts_delete AFTER DELETE ON action
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rollout_group_apply_deltas();
