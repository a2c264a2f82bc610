-- canhgac collector store, schema version 1. Forward only: a later change is
-- a new file, never an edit of this one. Records are protobuf (`rec`), see
-- collector/src/store/records.rs; the module doc of store/pg lists the
-- tables and how cursors are assigned in commit order.

CREATE TABLE counters (
    name text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES
    ('record', 0), ('change', 0), ('incident', 0), ('system', 0), ('policy', 0),
    ('audit', 0), ('operators', 0), ('correlated', 0), ('correlation_skipped', 0),
    ('fwd_seq', 0), ('fwd_bytes', 0), ('fwd_sent', 0), ('fwd_dropped', 0);

CREATE TABLE agencies (code text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE agency_stats (code text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE tokens (hash bytea PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE agents (agent_id text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);

CREATE TABLE records (
    cursor bigint PRIMARY KEY,
    alert boolean NOT NULL,
    agency text COLLATE "C" NOT NULL,
    agent_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    severity integer NOT NULL,
    time_us bigint NOT NULL,
    received_us bigint NOT NULL,
    rec bytea NOT NULL
);
CREATE INDEX records_alerts ON records (cursor) WHERE alert;
CREATE INDEX records_events ON records (cursor) WHERE NOT alert;
CREATE INDEX records_alerts_by_time ON records (time_us, cursor) WHERE alert;
CREATE INDEX records_alerts_by_agency ON records (agency, time_us, cursor) WHERE alert;

-- each (agent, seq) at most once; cursor NULL when quarantined
CREATE TABLE dedupe (
    agent_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    cursor bigint,
    PRIMARY KEY (agent_id, seq)
);
CREATE TABLE quarantine (
    agent_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    rec bytea NOT NULL,
    PRIMARY KEY (agent_id, seq)
);

CREATE TABLE systems (id bigint PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE operators (name text COLLATE "C" PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE audit (seq bigint PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE audit_checkpoints (seq bigint PRIMARY KEY, rec bytea NOT NULL);

CREATE TABLE incidents (id bigint PRIMARY KEY, agency text COLLATE "C" NOT NULL, rec bytea NOT NULL);
CREATE INDEX incidents_by_agency ON incidents (agency, id);
-- correlation keys contain 0x00, which text cannot hold
CREATE TABLE incident_keys (key bytea PRIMARY KEY, id bigint NOT NULL);
CREATE TABLE incident_alerts (id bigint NOT NULL, cursor bigint NOT NULL, PRIMARY KEY (id, cursor));
CREATE TABLE incident_changes (cursor bigint PRIMARY KEY, rec bytea NOT NULL);

CREATE TABLE policies (version bigint PRIMARY KEY, scope text COLLATE "C" NOT NULL, rec bytea NOT NULL);

CREATE TABLE forward_queue (seq bigint PRIMARY KEY, msg bytea NOT NULL);
CREATE TABLE forward_positions (
    id integer PRIMARY KEY CHECK (id = 1),
    alert bigint NOT NULL,
    change bigint NOT NULL
);
