-- Leases of singleton work (one row per task): the replica that holds a
-- lease runs the task; a lease not renewed by its expiry may be taken.
CREATE TABLE leases (
    name       text COLLATE "C" PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);
