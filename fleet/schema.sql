-- emotiond fleet ingest: tables and the operator's views (applied by every worker at start;
-- idempotent). One row per alert step; the event id (the alert's UUID, shared by its start,
-- updates and end) with the phase and the step's timestamp is the key, so a QoS 1 duplicate or a
-- redelivery after a worker or database restart never makes a second row.
CREATE TABLE IF NOT EXISTS alert_steps (
    id          uuid        NOT NULL,
    phase       text        NOT NULL,
    ts          timestamptz NOT NULL,
    device      text        NOT NULL,
    type        text        NOT NULL,
    rule        text,
    level       text,
    started_at  timestamptz,
    ended_at    timestamptz,
    details     jsonb       NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, phase, ts)
);
CREATE INDEX IF NOT EXISTS alert_steps_device_type ON alert_steps (device, type, started_at);

-- messages on the bus that are not events (malformed JSON, missing fields): kept out of
-- alert_steps, kept here for a look (a dead-letter table), never retried
CREATE TABLE IF NOT EXISTS rejected_messages (
    subject     text        NOT NULL,
    payload     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- the retained status of every device (online, or offline: its clean stop or its Last Will)
CREATE TABLE IF NOT EXISTS devices (
    device     text        PRIMARY KEY,
    status     text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- one row per alert: its steps kept together
CREATE OR REPLACE VIEW alerts AS
SELECT id, device, type, rule,
       min(started_at)                          AS started_at,
       max(ended_at)                            AS ended_at,
       bool_or(phase = 'end')                   AS ended,
       (array_agg(level ORDER BY ts DESC))[1]   AS last_level,
       count(*)                                 AS steps
FROM alert_steps GROUP BY id, device, type, rule;

-- alerts per device and type per hour (by the hour the alert started)
CREATE OR REPLACE VIEW alerts_per_hour AS
SELECT device, type, date_trunc('hour', started_at) AS hour, count(*) AS alerts
FROM alerts GROUP BY device, type, date_trunc('hour', started_at);

-- alerts open now (started, no end seen)
CREATE OR REPLACE VIEW open_alerts AS
SELECT * FROM alerts WHERE NOT ended;

-- devices offline now, from their retained status
CREATE OR REPLACE VIEW devices_offline AS
SELECT device, changed_at FROM devices WHERE status <> 'online';
