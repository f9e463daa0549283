-- Outbox rows the broker refused deterministically, moved aside instead of deleted (issue #12):
-- a message to a connector exchange that does not exist, or one the broker nacked or closed the
-- channel over while the connection stayed up, repeatedly. A transient failure (connection lost)
-- never parks a row. Operators see them at GET /rest/v1/system/outbox/parked and requeue or
-- discard them; the outbox's own columns are kept so that a requeued row is rendered anew.
-- The outbox's columns (LIKE copies them with NOT NULL, no defaults) plus the operator's view.
CREATE TABLE outbox_parked (
    LIKE outbox,
    PRIMARY KEY (id),
    -- What it was rendered to when it was refused.
    tenant            text,
    target_exchange   text,
    thing_id          text,
    topic             text,
    reason            text NOT NULL,
    parked_at         bigint NOT NULL DEFAULT epoch_ms()
);
CREATE INDEX outbox_parked_tenant ON outbox_parked (tenant, id);

COMMENT ON COLUMN outbox.attempts IS
    'Publishes of this row the broker refused while the connection stayed up; parked after a bound';
