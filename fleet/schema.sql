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

-- fleet updates: each device's retained <prefix>/update status (daemon/schemas/update.json), the
-- latest report per device (an older one arriving late never overwrites a newer one)
CREATE TABLE IF NOT EXISTS device_versions (
    device       text        PRIMARY KEY,
    device_group text        NOT NULL,
    version      integer,
    state        text        NOT NULL,
    target       integer,
    reason       text,
    reason_code  text,
    checks       integer     NOT NULL DEFAULT 0,
    rolled_back  integer     NOT NULL DEFAULT 0,
    refused      jsonb       NOT NULL DEFAULT '{}',
    reported_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS device_versions_group ON device_versions (device_group, version);

-- every update status report as it came (a device's history: what it tried, when, why it failed)
CREATE TABLE IF NOT EXISTS update_reports (
    device       text        NOT NULL,
    reported_at  timestamptz NOT NULL,
    state        text        NOT NULL,
    device_group text        NOT NULL,
    version      integer,
    target       integer,
    reason_code  text,
    reason       text,
    PRIMARY KEY (device, reported_at, state)
);

-- a device failed a release: rolled back after its health window, failed it before, or refused
-- it as broken (its model or its config); one row per device and release, the latest report
CREATE OR REPLACE VIEW update_failures AS
SELECT DISTINCT ON (device, target)
       device, device_group, target AS release, version AS running, state, reason_code, reason, reported_at
FROM update_reports
WHERE target IS NOT NULL
  AND (state IN ('rolled_back', 'failed') OR (state = 'refused' AND reason_code IN ('invalid_model', 'invalid_config')))
ORDER BY device, target, reported_at DESC;

-- per group and release: how many devices run it, are on their way to it, failed it
CREATE OR REPLACE VIEW rollout_progress AS
SELECT device_group, release,
       count(*) FILTER (WHERE version = release AND target IS NULL)  AS running,
       count(*) FILTER (WHERE state IN ('downloading', 'trying'))   AS in_progress,
       count(*) FILTER (WHERE failed)                                AS failed,
       count(*)                                                      AS reported
FROM (SELECT *, coalesce(target, version) AS release,
             (state IN ('rolled_back', 'failed')
              OR (state = 'refused' AND reason_code IN ('invalid_model', 'invalid_config'))) AS failed
      FROM device_versions) d
WHERE release IS NOT NULL
GROUP BY device_group, release;
