-- Status changes of actions become HOT updates (no new index entries): no index of `action`
-- mentions `status` or `active` any more, and its pages keep room for the new row versions.
-- An action changes status three to five times in its life; with seven indexes each change
-- wrote seven index entries, which made the UPDATE the costliest statement of report batches
-- and rollout activation alike.
DROP INDEX action_group_status;
DROP INDEX action_rollout_status;
DROP INDEX action_target_active;

-- A group's actions in id order: activation walks its SCHEDULED ones by this.
CREATE INDEX action_group ON action (rollout_group_id, id) WHERE rollout_group_id IS NOT NULL;
-- A rollout's actions: stop and delete walk them.
CREATE INDEX action_rollout ON action (rollout_id) WHERE rollout_id IS NOT NULL;
-- Actions with a maintenance window (few): the window sweep reads them.
CREATE INDEX action_window ON action (id) WHERE mw_schedule IS NOT NULL;

ALTER TABLE action SET (fillfactor = 75);

-- The same for targets: activation sets `assigned_ds_id`, a finished action `installed_ds_id`.
-- Their indexes served only the foreign-key checks of a distribution set's deletion (rare, and
-- a scan then is fine); every rollout paid for them twice per device.
DROP INDEX target_assigned_ds;
DROP INDEX target_installed_ds;
ALTER TABLE target SET (fillfactor = 80);

-- Status history is written for every change of every action. Its foreign key cost a lookup
-- and a row lock on `action` per history row; the cascade it provided is kept by a statement
-- trigger instead.
ALTER TABLE action_status DROP CONSTRAINT action_status_action_id_fkey;

CREATE FUNCTION action_status_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM action_status WHERE action_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;

CREATE TRIGGER action_status_cascade AFTER DELETE ON action
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION action_status_cascade();

-- Group counters without joining the transition tables: an update counts -1 for each old row's
-- (group, status) and +1 for each new row's, and unchanged statuses cancel out. The join it
-- replaces was planned without statistics (transition tables have none) and could turn into a
-- nested loop: hundreds of milliseconds for a thousand-row update.
CREATE OR REPLACE FUNCTION rollout_group_apply_deltas() RETURNS trigger LANGUAGE plpgsql AS $$
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
            SELECT rollout_group_id AS g, status AS s, -1 AS n
            FROM old_rows WHERE rollout_group_id IS NOT NULL
            UNION ALL
            SELECT rollout_group_id, status, 1
            FROM new_rows WHERE rollout_group_id IS NOT NULL
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

-- Referential integrity between the hot tables and distribution sets / targets is checked on
-- the rare side instead of per row on the hot one: a rollout creates, activates and finishes
-- an action and (re)assigns a target per device, and each of those paid a lookup and a row lock
-- per foreign key. The engine only writes sets it has share-locked and found valid, and
-- targets it holds; deletions are guarded and cascaded by the triggers below.
ALTER TABLE action DROP CONSTRAINT action_ds_id_fkey;
ALTER TABLE action DROP CONSTRAINT action_target_id_fkey;
ALTER TABLE target DROP CONSTRAINT target_assigned_ds_id_fkey;
ALTER TABLE target DROP CONSTRAINT target_installed_ds_id_fkey;

-- A set still referenced by an action or a target cannot be deleted (the Management API then
-- soft-deletes it, as it did on the foreign-key violation).
CREATE FUNCTION distribution_set_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM action WHERE tenant_id = OLD.tenant_id AND ds_id = OLD.id)
       OR EXISTS (SELECT 1 FROM target WHERE assigned_ds_id = OLD.id OR installed_ds_id = OLD.id) THEN
        RAISE foreign_key_violation USING MESSAGE =
            format('distribution set %s is still referenced by actions or targets', OLD.id);
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER distribution_set_in_use BEFORE DELETE ON distribution_set
    FOR EACH ROW EXECUTE FUNCTION distribution_set_in_use();

-- A deleted target takes its actions (and with them their history) along.
CREATE FUNCTION target_actions_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM action WHERE target_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;

CREATE TRIGGER target_actions_cascade AFTER DELETE ON target
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION target_actions_cascade();
