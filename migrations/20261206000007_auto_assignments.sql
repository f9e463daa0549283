-- Auto-assignments (rollouts.md §1.4; hawkBit master's `sp_auto_assignment`): a target filter
-- query and a distribution set; every matching, compatible target that never had an action of
-- the set gets one. Matching is event-driven (a target registers or changes, in the same
-- transaction) plus a pass over the fleet in bounded chunks when an auto-assignment starts or
-- resumes, and a slow safety pass.
CREATE TABLE auto_assignment (
    id                     bigserial PRIMARY KEY,
    tenant_id              bigint NOT NULL REFERENCES tenant (id) ON DELETE CASCADE,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    description            text CHECK (length(description) <= 512),
    query                  text NOT NULL CHECK (length(query) BETWEEN 1 AND 1024),
    ds_id                  bigint NOT NULL REFERENCES distribution_set (id) ON DELETE CASCADE,
    action_type            text NOT NULL CHECK (action_type IN ('FORCED', 'SOFT', 'DOWNLOAD_ONLY')),
    weight                 integer NOT NULL CHECK (weight BETWEEN 0 AND 1000),
    confirmation_required  boolean NOT NULL DEFAULT false,
    start_at               bigint,
    status                 text NOT NULL CHECK (status IN ('WAITING_FOR_APPROVAL', 'APPROVAL_DENIED',
                           'READY', 'PAUSED', 'RUNNING')),
    approval_decided_by    text CHECK (length(approval_decided_by) <= 64),
    approval_remark        text CHECK (length(approval_remark) <= 255),
    -- The legacy 1.1 API keeps a filter's auto-assignment here: one per filter, its query the
    -- filter's own.
    target_filter_id       bigint UNIQUE REFERENCES target_filter_query (id) ON DELETE CASCADE,
    -- The fleet pass: targets with a larger id are still to be looked at; NULL = no pass due.
    pass_after             bigint,
    created_at             bigint NOT NULL DEFAULT epoch_ms(),
    created_by             text NOT NULL,
    last_modified_at       bigint NOT NULL DEFAULT epoch_ms(),
    last_modified_by       text NOT NULL,
    opt_lock_revision      bigint NOT NULL DEFAULT 1
);
CREATE INDEX auto_assignment_tenant ON auto_assignment (tenant_id, id);
-- What the worker and the event path look for: the few auto-assignments that assign.
CREATE INDEX auto_assignment_active ON auto_assignment (tenant_id)
    WHERE status IN ('READY', 'RUNNING');
-- A filter's auto-assignment lives in auto_assignment (target_filter_id); the filter's own
-- columns for it were never written.
ALTER TABLE target_filter_query DROP COLUMN auto_assign_ds_id,
    DROP COLUMN auto_assign_action_type, DROP COLUMN auto_assign_weight,
    DROP COLUMN confirmation_required;
