/*
 * audit — the append-only audit log: one JSON object per line in
 * <data>/audit.log: {"time","actor","action","object","outcome","remote",
 * "detail"}.  Lines are written with one write() on an O_APPEND descriptor
 * (so they survive a crash of the process) and fdatasync'd at most once a
 * second and at close.  Thread-safe: a mutex guards the descriptor.
 */
#ifndef HASHI_AUDIT_H
#define HASHI_AUDIT_H

#include "../proto/util.h"

struct audit;

struct audit *audit_open(const char *data_dir, struct err *e);
void audit_close(struct audit *a);

struct audit_entry {
    const char *actor;    /* user login, "gateway:<name>", "ae:<AET>" */
    const char *action;   /* store, retrieve, render, query, login,
                             login_failed, conflict, reject, ... */
    const char *object;   /* UIDs or ids the action was on; may be NULL */
    const char *outcome;  /* "ok", "denied", "error", "conflict", ... */
    const char *remote;   /* peer address; may be NULL */
    const char *detail;   /* free text; may be NULL */
};

int audit_write(struct audit *a, const struct audit_entry *entry);

#endif
