-- Federation: the position of the mirror that keeps downstream (provincial)
-- collectors' incidents, next to the correlator's.
INSERT INTO counters (name, value) VALUES ('mirrored', 0);
