-- Distribution set metadata (hawkBit's maxMetaDataEntriesPerDistributionSet is checked by the
-- API) and the minimum number of artifacts a module of a type needs to be complete.
CREATE TABLE distribution_set_metadata (
    ds_id  bigint NOT NULL REFERENCES distribution_set (id) ON DELETE CASCADE,
    key    text NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    value  text NOT NULL CHECK (length(value) <= 4000),
    PRIMARY KEY (ds_id, key)
);

ALTER TABLE software_module_type
    ADD COLUMN min_artifacts integer NOT NULL DEFAULT 0 CHECK (min_artifacts >= 0);
