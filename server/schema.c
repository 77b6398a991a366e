/*
 * schema — the tables of hashi.db, as an ordered list of migrations.
 *
 * Every migration is a block of SQL run in one transaction, after which
 * PRAGMA user_version is set to its position (1-based).  Applied
 * migrations are never edited: later changes (the consult workflow's
 * cases and outboxes, say) are new entries at the end of the list.
 *
 * Conventions: times are integer milliseconds since the epoch (UTC);
 * ids are INTEGER PRIMARY KEY; secrets are never stored, only their
 * SHA-256 (tokens) or scrypt (passwords).  A clinic id of 0 in image
 * tables means "no owning clinic" (only admins see such studies).
 *
 * A patient row is one set of demographics (ID, name, birth date, sex) as
 * one clinic sent it: a study keeps the demographics it arrived with, even
 * if a later study of the same patient ID spells the name differently.
 */
#include "schema.h"

#include <stdio.h>

static const char *const migrations[] = {
    /* 1: identity (clinics, users, sessions, gateways, login failures)
     *    and the image index (patients, studies, series, instances,
     *    conflicts). */
    "CREATE TABLE clinics ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL CHECK (kind IN ('rural', 'city')),"
    "  calling_ae TEXT UNIQUE,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  login TEXT NOT NULL UNIQUE,"
    "  clinic_id INTEGER NOT NULL REFERENCES clinics(id),"
    "  role TEXT NOT NULL"
    "    CHECK (role IN ('requester', 'specialist', 'admin')),"
    "  password TEXT NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE user_specialties ("
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  specialty TEXT NOT NULL,"
    "  PRIMARY KEY (user_id, specialty));"
    "CREATE INDEX user_specialties_by_specialty"
    "  ON user_specialties(specialty);"
    "CREATE TABLE sessions ("
    "  token_sha256 TEXT PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  revoked INTEGER NOT NULL DEFAULT 0,"
    "  remote TEXT);"
    "CREATE INDEX sessions_by_user ON sessions(user_id);"
    "CREATE TABLE gateways ("
    "  id INTEGER PRIMARY KEY,"
    "  clinic_id INTEGER NOT NULL REFERENCES clinics(id),"
    "  name TEXT NOT NULL,"
    "  token_sha256 TEXT NOT NULL UNIQUE,"
    "  created INTEGER NOT NULL,"
    "  revoked INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (clinic_id, name));"
    "CREATE TABLE login_failures ("
    "  id INTEGER PRIMARY KEY,"
    "  login TEXT,"
    "  remote TEXT,"
    "  at INTEGER NOT NULL);"
    "CREATE INDEX login_failures_by_login ON login_failures(login, at);"
    "CREATE INDEX login_failures_by_remote ON login_failures(remote, at);"
    "CREATE TABLE patients ("
    "  id INTEGER PRIMARY KEY,"
    "  clinic_id INTEGER NOT NULL DEFAULT 0,"
    "  patient_id TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  birth_date TEXT NOT NULL,"
    "  sex TEXT NOT NULL,"
    "  UNIQUE (clinic_id, patient_id, name, birth_date, sex));"
    "CREATE TABLE studies ("
    "  id INTEGER PRIMARY KEY,"
    "  study_uid TEXT NOT NULL UNIQUE,"
    "  patient_ref INTEGER NOT NULL REFERENCES patients(id),"
    "  date TEXT NOT NULL,"
    "  time TEXT NOT NULL,"
    "  description TEXT NOT NULL,"
    "  accession TEXT NOT NULL,"
    "  modalities TEXT NOT NULL DEFAULT '',"  /* backslash-separated */
    "  clinic_id INTEGER NOT NULL DEFAULT 0,"
    "  num_series INTEGER NOT NULL DEFAULT 0,"
    "  num_instances INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);"
    "CREATE INDEX studies_by_patient ON studies(patient_ref);"
    "CREATE INDEX studies_by_clinic ON studies(clinic_id, date);"
    "CREATE INDEX studies_by_date ON studies(date, time);"
    "CREATE INDEX studies_by_accession ON studies(accession);"
    "CREATE TABLE series ("
    "  id INTEGER PRIMARY KEY,"
    "  series_uid TEXT NOT NULL UNIQUE,"
    "  study_ref INTEGER NOT NULL REFERENCES studies(id),"
    "  modality TEXT NOT NULL,"
    "  series_number INTEGER NOT NULL,"
    "  description TEXT NOT NULL,"
    "  num_instances INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX series_by_study ON series(study_ref, series_number);"
    "CREATE TABLE instances ("
    "  id INTEGER PRIMARY KEY,"
    "  sop_uid TEXT NOT NULL UNIQUE,"
    "  series_ref INTEGER NOT NULL REFERENCES series(id),"
    "  sop_class TEXT NOT NULL,"
    "  transfer_syntax TEXT NOT NULL,"
    "  instance_number INTEGER NOT NULL,"
    "  rows INTEGER NOT NULL,"
    "  columns INTEGER NOT NULL,"
    "  frames INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  via TEXT NOT NULL,"
    "  calling_ae TEXT,"
    "  user TEXT,"
    "  remote TEXT,"
    "  clinic_id INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX instances_by_series"
    "  ON instances(series_ref, instance_number);"
    "CREATE INDEX instances_by_sha ON instances(sha256);"
    "CREATE TABLE conflicts ("
    "  id INTEGER PRIMARY KEY,"
    "  sop_uid TEXT NOT NULL,"
    "  existing_sha256 TEXT NOT NULL,"
    "  new_sha256 TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  received_at INTEGER NOT NULL,"
    "  via TEXT NOT NULL,"
    "  calling_ae TEXT,"
    "  user TEXT,"
    "  remote TEXT,"
    "  clinic_id INTEGER NOT NULL DEFAULT 0,"
    "  path TEXT NOT NULL);"
    "CREATE INDEX conflicts_by_sop ON conflicts(sop_uid);",

    /* 2: a clinic has many modalities, each with its own calling AE
     *    title; clinics.calling_ae is kept only as the first one. */
    "CREATE TABLE clinic_aes ("
    "  calling_ae TEXT PRIMARY KEY,"
    "  clinic_id INTEGER NOT NULL REFERENCES clinics(id),"
    "  created INTEGER NOT NULL);"
    "INSERT INTO clinic_aes (calling_ae, clinic_id, created)"
    "  SELECT calling_ae, id, created FROM clinics"
    "  WHERE calling_ae IS NOT NULL;",

    /* 3: the cases a gateway created (access.h: a gateway sees those
     *    and no others); a study's patient is the study's clinic's. */
    "CREATE TABLE case_gateways ("
    "  case_id TEXT PRIMARY KEY,"
    "  gateway_id INTEGER NOT NULL REFERENCES gateways(id));"
    "CREATE INDEX case_gateways_by_gateway ON case_gateways(gateway_id);"
    "CREATE TRIGGER studies_patient_of_clinic BEFORE INSERT ON studies"
    "  WHEN (SELECT clinic_id FROM patients WHERE id = NEW.patient_ref)"
    "   IS NOT NEW.clinic_id"
    "  BEGIN SELECT RAISE(ABORT, 'patient of another clinic'); END;",

    /* 4: resumable uploads (upload.c: `durable` is the byte count
     *    fdatasync'd into DATA/uploads/<id>.part; done_* once ingested),
     *    study previews (DATA/previews/<study_uid>.jpg), announced
     *    instance counts and the gateways' last status (gateway.c). */
    "CREATE TABLE uploads ("
    "  id INTEGER PRIMARY KEY,"
    "  principal TEXT NOT NULL,"          /* login, or gateway:<name> */
    "  upload_id TEXT NOT NULL,"
    "  clinic_id INTEGER NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('instance', 'preview')),"
    "  study_uid TEXT,"
    "  case_id TEXT,"
    "  sha256 TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  durable INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL,"
    "  touched INTEGER NOT NULL,"
    "  done_status TEXT,"                 /* stored, duplicate, conflict */
    "  done_uid TEXT,"                    /* SOP UID, or a preview's study */
    "  UNIQUE (principal, upload_id));"
    "CREATE INDEX uploads_by_touched ON uploads(touched);"
    "CREATE TABLE study_previews ("
    "  study_uid TEXT PRIMARY KEY,"
    "  clinic_id INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  at INTEGER NOT NULL);"
    "CREATE TABLE study_expectations ("
    "  study_uid TEXT PRIMARY KEY,"
    "  clinic_id INTEGER NOT NULL,"
    "  instances INTEGER NOT NULL,"
    "  priority TEXT,"
    "  at INTEGER NOT NULL);"
    "CREATE TABLE gateway_status ("
    "  gateway_id INTEGER PRIMARY KEY REFERENCES gateways(id),"
    "  status TEXT NOT NULL,"             /* gateway.status's fields, JSON */
    "  last_seen INTEGER NOT NULL);",

    /* 5: the consult workflow (cases.c), the per-user outboxes (outbox.c)
     *    and the kept hashi.v1 replies (ws.c).  Those modules used to
     *    create these tables themselves, so a database made before this
     *    migration may have them already: IF NOT EXISTS adopts them. */
    "CREATE TABLE IF NOT EXISTS cases ("
    "  case_id TEXT PRIMARY KEY,"
    "  clinic_id INTEGER NOT NULL,"
    "  requester_id INTEGER,"             /* NULL when a gateway sent it */
    "  patient_age INTEGER,"
    "  patient_sex TEXT,"
    "  history TEXT NOT NULL DEFAULT '',"
    "  question TEXT NOT NULL,"
    "  priority TEXT NOT NULL"
    "    CHECK (priority IN ('stat', 'urgent', 'routine')),"
    "  specialty TEXT,"
    "  specialist_id INTEGER,"
    "  status TEXT NOT NULL CHECK (status IN"
    "    ('new', 'claimed', 'answered', 'closed', 'reopened')),"
    "  claimed_by INTEGER,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  due_at INTEGER NOT NULL DEFAULT 0,"
    "  escalation_level INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS cases_by_clinic"
    "  ON cases(clinic_id, created_at);"
    "CREATE INDEX IF NOT EXISTS cases_by_specialty"
    "  ON cases(specialty, created_at);"
    "CREATE INDEX IF NOT EXISTS cases_by_due ON cases(status, due_at);"
    "CREATE TABLE IF NOT EXISTS case_studies ("
    "  case_id TEXT NOT NULL,"
    "  study_uid TEXT NOT NULL,"
    "  pos INTEGER NOT NULL,"
    "  PRIMARY KEY (case_id, study_uid));"
    "CREATE INDEX IF NOT EXISTS case_studies_by_study"
    "  ON case_studies(study_uid);"
    "CREATE TABLE IF NOT EXISTS case_participants ("
    "  case_id TEXT NOT NULL,"
    "  user_id INTEGER NOT NULL,"
    "  why TEXT NOT NULL,"     /* requester clinic notified escalated
                                  claimer author */
    "  since INTEGER NOT NULL,"
    "  PRIMARY KEY (case_id, user_id));"
    "CREATE INDEX IF NOT EXISTS case_participants_by_user"
    "  ON case_participants(user_id);"
    "CREATE TABLE IF NOT EXISTS messages ("
    "  message_id TEXT PRIMARY KEY,"
    "  case_id TEXT NOT NULL,"
    "  author_id INTEGER NOT NULL,"
    "  text TEXT NOT NULL,"
    "  image_sop TEXT,"
    "  image_frame INTEGER,"
    "  image_window TEXT,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS messages_by_case"
    "  ON messages(case_id, created_at);"
    "CREATE TABLE IF NOT EXISTS message_receipts ("
    "  message_id TEXT NOT NULL,"
    "  user_id INTEGER NOT NULL,"
    "  delivered_at INTEGER,"
    "  read_at INTEGER,"
    "  PRIMARY KEY (message_id, user_id));"
    "CREATE TABLE IF NOT EXISTS answers ("
    "  case_id TEXT PRIMARY KEY,"
    "  impression TEXT NOT NULL,"
    "  recommendation TEXT NOT NULL,"
    "  text TEXT NOT NULL,"
    "  author_id INTEGER NOT NULL,"
    "  at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS oncall ("
    "  specialty TEXT NOT NULL,"
    "  position INTEGER NOT NULL,"
    "  user_id INTEGER NOT NULL,"
    "  PRIMARY KEY (specialty, position),"
    "  UNIQUE (specialty, user_id));"
    "CREATE TABLE IF NOT EXISTS outbox ("
    "  user_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  event_id TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL,"
    "  case_id TEXT,"
    "  at INTEGER NOT NULL,"
    "  body TEXT NOT NULL,"
    "  PRIMARY KEY (user_id, seq));"
    "CREATE TABLE IF NOT EXISTS outbox_cursor ("
    "  user_id INTEGER PRIMARY KEY,"
    "  last_seq INTEGER NOT NULL DEFAULT 0,"
    "  acked_seq INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS request_replies ("
    "  actor TEXT NOT NULL,"          /* login, or gateway:<name> */
    "  request_id TEXT NOT NULL,"
    "  reply TEXT NOT NULL,"          /* the reply frame, byte for byte */
    "  at INTEGER NOT NULL,"
    "  PRIMARY KEY (actor, request_id));"
    "CREATE INDEX IF NOT EXISTS request_replies_by_at"
    "  ON request_replies(at);",

    /* 6: users can be disabled; auth_epoch counts every loss of access
     *    (a revoked session or gateway, a disabled or removed user), so
     *    a process holding open sessions sees another's revocation with
     *    one read (auth_epoch()). */
    "ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE auth_epoch ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  n INTEGER NOT NULL);"
    "INSERT INTO auth_epoch (id, n) VALUES (1, 0);"
    "CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked ON sessions"
    "  WHEN NEW.revoked != OLD.revoked"
    "  BEGIN UPDATE auth_epoch SET n = n + 1; END;"
    "CREATE TRIGGER gateways_revoked AFTER UPDATE OF revoked ON gateways"
    "  WHEN NEW.revoked != OLD.revoked"
    "  BEGIN UPDATE auth_epoch SET n = n + 1; END;"
    "CREATE TRIGGER users_disabled AFTER UPDATE OF disabled ON users"
    "  WHEN NEW.disabled != OLD.disabled"
    "  BEGIN UPDATE auth_epoch SET n = n + 1; END;"
    "CREATE TRIGGER users_removed AFTER DELETE ON users"
    "  BEGIN UPDATE auth_epoch SET n = n + 1; END;",

    /* 7: Web Push (webpush.c): each device's subscription, and per user
     *    the last outbox seq looked at for pushes. */
    "CREATE TABLE push_subscriptions ("
    "  id INTEGER PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  endpoint TEXT NOT NULL UNIQUE,"
    "  p256dh TEXT NOT NULL,"             /* base64url, as the browser gave */
    "  auth TEXT NOT NULL,"
    "  created INTEGER NOT NULL);"
    "CREATE INDEX push_subscriptions_by_user"
    "  ON push_subscriptions(user_id);"
    "CREATE TABLE push_cursor ("
    "  user_id INTEGER PRIMARY KEY,"
    "  seq INTEGER NOT NULL);",

    /* 8: a clinic's AE may also be a C-MOVE destination: where it
     *    listens ("HOST:PORT", scp.c), NULL if it only sends. */
    "ALTER TABLE clinic_aes ADD COLUMN dest TEXT;",

    /* 9: the outbox stores each event once (outbox_events) and per
     *    recipient only (user_id, seq, event): a case sent to 1,000
     *    specialists writes one body, not 1,000.  Existing rows keep
     *    their event ids, seqs and acks.  Then cases.to_specialty. */
    "CREATE TABLE outbox_events ("
    "  id INTEGER PRIMARY KEY,"
    "  event_id TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL,"
    "  case_id TEXT,"
    "  at INTEGER NOT NULL,"
    "  body TEXT NOT NULL);"
    "INSERT INTO outbox_events (event_id, kind, case_id, at, body)"
    "  SELECT event_id, kind, case_id, at, body FROM outbox"
    "  ORDER BY at, user_id, seq;"
    "CREATE TABLE outbox_rows ("
    "  user_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  event INTEGER NOT NULL,"           /* outbox_events.id */
    "  PRIMARY KEY (user_id, seq)) WITHOUT ROWID;"
    "INSERT INTO outbox_rows (user_id, seq, event)"
    "  SELECT o.user_id, o.seq, e.id FROM outbox o"
    "  JOIN outbox_events e ON e.event_id = o.event_id;"
    "DROP TABLE outbox;"
    "ALTER TABLE outbox_rows RENAME TO outbox;"
    /* cases.to_specialty: the case went to every specialist of its
     *    specialty (at create, or escalated to it): its events reach
     *    those who join the specialty later too (cases.c's notify).  Existing cases: those
     *    of a specialty named to nobody and without an on-call list, or
     *    escalated until nobody was left to tell. */
    "ALTER TABLE cases ADD COLUMN to_specialty INTEGER NOT NULL DEFAULT 0;"
    "UPDATE cases SET to_specialty = 1 WHERE specialty IS NOT NULL"
    "  AND specialist_id IS NULL AND (escalation_level > 0 AND due_at = 0"
    "  OR NOT EXISTS (SELECT 1 FROM oncall o"
    "   WHERE o.specialty = cases.specialty));",
    /* 10: ambulance crews (issue 12).  Clinics of kind 'ems' (an ambulance
     *    service) and users of role 'crew'.  The CHECKs of migration 1
     *    only widen, so their text is edited in place (SQLite's documented
     *    way to relax a CHECK: a table rebuild would need foreign_keys
     *    off, which cannot change inside this transaction); the CREATE
     *    TABLE after it bumps the schema cookie for other connections.
     *    case_prearrival: a crew's pre-arrival data, one row per case. */
    "PRAGMA writable_schema = ON;"
    "UPDATE sqlite_schema SET sql = replace(sql,"
    "  '''rural'', ''city'')', '''rural'', ''city'', ''ems'')')"
    "  WHERE type = 'table' AND name = 'clinics';"
    "UPDATE sqlite_schema SET sql = replace(sql,"
    "  '''specialist'', ''admin'')',"
    "  '''specialist'', ''admin'', ''crew'')')"
    "  WHERE type = 'table' AND name = 'users';"
    "PRAGMA writable_schema = RESET;"
    "CREATE TABLE case_prearrival ("
    "  case_id TEXT PRIMARY KEY"
    "    REFERENCES cases(case_id) ON DELETE CASCADE,"
    "  last_known_well INTEGER NOT NULL,"     /* ms */
    "  bp_sys INTEGER, bp_dia INTEGER, heart_rate INTEGER,"
    "  spo2 INTEGER, glucose INTEGER, gcs INTEGER,"
    "  lams INTEGER,"                         /* Los Angeles Motor Scale */
    "  eta INTEGER NOT NULL,"                 /* ms: expected arrival */
    "  destination TEXT NOT NULL,"
    "  arrived_at INTEGER,"                   /* hand-over: study linked */
    "  arrived_study TEXT,"
    "  arrived_by INTEGER REFERENCES users(id));",

    /* 11: the case timeline and answer revisions (issue 9).
     *    case_steps: what happened to a case and when, beside what the
     *    cases row holds (sent = created_at; escalations are in
     *    case_participants): a specialist's device got it (delivered: its
     *    case.new / case.escalated event acknowledged), a specialist
     *    opened it (case.get), claimed, answered, amended, closed,
     *    reopened.  answer_revisions: an answer replaced by an amendment
     *    (or by a new answer after a reopen) is kept, rev 1 the first.
     *    Existing cases: their claim (when recorded), answer and close. */
    "CREATE TABLE case_steps ("
    "  case_id TEXT NOT NULL,"
    "  step TEXT NOT NULL,"
    "  user_id INTEGER,"
    "  at INTEGER NOT NULL);"
    "CREATE INDEX case_steps_by_case ON case_steps(case_id, step, user_id);"
    "CREATE TABLE answer_revisions ("
    "  case_id TEXT NOT NULL,"
    "  rev INTEGER NOT NULL,"
    "  impression TEXT NOT NULL,"
    "  recommendation TEXT NOT NULL,"
    "  text TEXT NOT NULL,"
    "  author_id INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"                  /* when it was written */
    "  replaced_at INTEGER NOT NULL,"
    "  PRIMARY KEY (case_id, rev));"
    "INSERT INTO case_steps (case_id, step, user_id, at)"
    "  SELECT case_id, 'claimed', user_id, since FROM case_participants"
    "  WHERE why = 'claimer';"
    "INSERT INTO case_steps (case_id, step, user_id, at)"
    "  SELECT case_id, 'answered', author_id, at FROM answers;"
    "INSERT INTO case_steps (case_id, step, user_id, at)"
    "  SELECT case_id, 'closed', NULL, updated_at FROM cases"
    "  WHERE status = 'closed';",
    /* 12: a crew's photos (issue 12) come as uploads of kind 'photo'
     *    (upload.c, photo.c): the CHECK widened in place as in 10. */
    "PRAGMA writable_schema = ON;"
    "UPDATE sqlite_schema SET sql = replace(sql,"
    "  '''instance'', ''preview'')',"
    "  '''instance'', ''preview'', ''photo'')')"
    "  WHERE type = 'table' AND name = 'uploads';"
    "PRAGMA writable_schema = RESET;",
    /* 13: C-FIND and QIDO-RS by exact PatientID (qido.c starts from
     *    the patients it names). */
    "CREATE INDEX patients_by_patient_id ON patients(patient_id);",

    /* 14: a clinic's requesters and admins, who hear of its every case
     *    (cases.c's create and notify), without a scan of all users:
     *    with 10,000 specialists in one hospital, 17 % of a loaded
     *    server's CPU. */
    "CREATE INDEX users_by_clinic_role ON users(clinic_id, role);",

    /* 15: new recipient rows go to outbox_hot, small, and move to outbox
     *    in batches (outbox.c, outbox_settle): an event for 1,000 users
     *    put straight into the large table, keyed by user, dirtied a page
     *    per user — 4 MB of WAL for one case. */
    "CREATE TABLE outbox_hot ("
    "  user_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  event INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, seq)) WITHOUT ROWID;"
    /* ... and both, for a person with sqlite3 (the server's queries
     * read the two tables each with its own key: OUTBOX_ROWS_OF). */
    "CREATE VIEW outbox_all AS"
    "  SELECT user_id, seq, event FROM outbox"
    "  UNION ALL SELECT user_id, seq, event FROM outbox_hot;",
};

#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int schema_version(void)
{
    return NMIGRATIONS;
}

static int user_version(sqlite3 *db, int *v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL))
        return ERR_DB;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : ERR_DB;
}

int schema_migrate(sqlite3 *db, struct err *e)
{
    return schema_migrate_to(db, NMIGRATIONS, e);
}

int schema_migrate_to(sqlite3 *db, int version, struct err *e)
{
    int v = 0;
    /* The read happens inside the write transaction below as well, so two
     * processes opening a fresh database cannot both run migration 1. */
    for (;;) {
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
            return err_set(e, ERR_DB, "schema: begin: %s",
                           sqlite3_errmsg(db));
        if (user_version(db, &v)) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return err_set(e, ERR_DB, "schema: user_version: %s",
                           sqlite3_errmsg(db));
        }
        if (v > NMIGRATIONS) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return err_set(e, ERR_UNSUPPORTED,
                           "database schema %d is newer than this program "
                           "(%d)", v, NMIGRATIONS);
        }
        if (v >= version) {
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            return 0;
        }
        char *msg = NULL;
        if (sqlite3_exec(db, migrations[v], NULL, NULL, &msg)) {
            err_set(e, ERR_DB, "schema: migration %d: %s", v + 1,
                    msg ? msg : sqlite3_errmsg(db));
            sqlite3_free(msg);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return ERR_DB;
        }
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
        if (sqlite3_exec(db, pragma, NULL, NULL, NULL) ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) {
            err_set(e, ERR_DB, "schema: migration %d: %s", v + 1,
                    sqlite3_errmsg(db));
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return ERR_DB;
        }
    }
}
