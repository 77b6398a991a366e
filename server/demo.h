/*
 * demo — the clinician demo's data, made by the server binary itself (no
 * Python at run time): synthetic non-contrast head CTs (a phantom in
 * Hounsfield units: scalp, skull tables and diploe, CSF, grey and white
 * matter, ventricles, and a finding) and the consults around them,
 * written through the same modules the server uses — store_put_file for
 * the instances, cases.c's typed requests for the cases, chat, answer
 * and receipts.  Everything is synthetic and named DEMO / demo-.
 *
 * demo_seed is idempotent: the seeded studies have fixed UIDs and bytes
 * (stored again they are duplicates), cases and messages have fixed ids,
 * and a repeated claim, answer or read is a no-op in cases.c.
 */
#ifndef HASHI_DEMO_H
#define HASHI_DEMO_H

#include <stdio.h>

#include "../proto/util.h"

struct server;

/* The case the start-up text names first: STAT, neurology, waiting in
 * demo-neuro's inbox (first on call) with its escalation deadline. */
#define DEMO_STAT_CASE "demo-stat-head-ct"
/* The answered routine case: chat with a key image, read receipts. */
#define DEMO_ROUTINE_CASE "demo-routine-headache"
/* Slices of each seeded study, and of the live scenario's study. */
#define DEMO_SLICES 30
#define DEMO_LIVE_SLICES 24

/* Seed the demo consults on srv (its store open on an initialised data
 * dir whose demo clinics and users exist, cases_init done; no live
 * delivery needed): the neurology on-call list (demo-neuro, then
 * demo-neuro2), two studies of DEMO_SLICES slices each, announced so the
 * cases read "30 of 30", the answered routine case and the STAT case.
 * Writes one line per step to out (may be NULL). */
int demo_seed(struct server *srv, FILE *out, struct err *e);

/* The live scenario's study: DEMO_LIVE_SLICES files CT0001.dcm ... in
 * dir (created if needed; each file written under a temporary name, then
 * renamed), with fresh UIDs each call, dated now.  study_uid (65 bytes)
 * receives its Study Instance UID. */
int demo_write_live_study(const char *dir, char *study_uid, struct err *e);

#endif
