-- Approval webhook notices (service.md `DMF_APPROVAL_WEBHOOK`), a transactional outbox of
-- their own: a row is written in the transaction that enters WAITING_FOR_APPROVAL, so a crash
-- or restart never loses the call; the deliverer leases due rows, posts them with capped
-- backoff and deletes them when delivered. Leaving WAITING_FOR_APPROVAL (approve, deny, stop,
-- delete) withdraws an undelivered notice.
CREATE TABLE approval_notice (
    rollout_id       bigint PRIMARY KEY REFERENCES rollout (id) ON DELETE CASCADE,
    body             jsonb NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    -- Due time, or the end of the lease of the deliverer that holds it.
    next_attempt_at  bigint NOT NULL DEFAULT epoch_ms(),
    last_error       text,
    created_at       bigint NOT NULL DEFAULT epoch_ms()
);
CREATE INDEX approval_notice_due ON approval_notice (next_attempt_at);
