#!/bin/sh
# A gateway learns the priority of the studies it names and nothing else
# about its clinic's cases: study.priority answers, for each asked study
# that an open case of the gateway's own clinic names, only the most
# urgent priority; another clinic's case, a closed case and an unknown
# study add nothing, and no frame the gateway receives carries a case id,
# a case's text or a study it did not ask about.  Users may not ask.
. "$(dirname "$0")/lib.sh"

hashi_init
user_add req-b "Clinic B" requester
GW=$(cat "$(gw_token gw-prio-scope)")
hashi_start
R=$(login demo-requester)
B=$(login req-b)

cd "$HASHI_ROOT"
$PY - "$HURL" "$CACERT" "$GW" "$R" "$B" 2>"$T_TMP/py.err" <<'PYEOF' ||
import json
import sys
sys.path.insert(0, "tests/integration")
from uplink import Session, http, expect, expect_error, main

X, Y, W, Z, U = ("1.2.826.0.1.77.1", "1.2.826.0.1.77.2", "1.2.826.0.1.77.3",
                 "1.2.826.0.1.77.4", "1.2.826.0.1.77.5")

def run(a):
    url, ca, GW, R, B = a
    g = Session(url, ca, GW, "hashi-gateway")
    got = [json.dumps(g.welcome)]
    nxt = g.next
    def recording():
        m = nxt()
        got.append(json.dumps(m))
        return m
    g.next = recording

    cases = (   # who, case id, priority, studies, question
        (R, "case-a-routine", "routine", [X], "Secret question one?"),
        (R, "case-a-stat", "stat", [Y, Z], "Secret question two?"),
        (R, "case-a-urgent", "urgent", [X], "Secret question three?"),
        (R, "case-a-closed", "stat", [W], "Secret question four?"),
        (B, "case-b-stat", "stat", [X, W], "Secret question five?"))
    for who, cid, prio, uids, q in cases:
        code, body = http(url, ca, "POST", "/api/cases", who, {
            "case_id": cid, "question": q, "priority": prio,
            "specialty": "neurology", "study_uids": uids,
            "history": "Private history of " + cid})
        expect(code == 201, "case %s created" % cid, body.decode())
    code, body = http(url, ca, "POST", "/api/cases/case-a-closed/close", R,
                      {"reason": "done"})
    expect(code == 200, "case-a-closed closed", body.decode())

    r = g.req({"type": "study.priority", "study_uids": [U, X, Y, W]})
    expect(r.get("ok") and r["result"] == {"studies": [
        {"study_uid": X, "priority": "urgent"},
        {"study_uid": Y, "priority": "stat"}]},
        "X urgent (its clinic's most urgent open case, not clinic B's "
        "stat), Y stat, W (closed here, B's elsewhere) and U left out", r)
    r = g.req({"type": "study.priority", "study_uids": [U]})
    expect(r.get("ok") and r["result"] == {"studies": []},
           "an unknown study: nothing", r)
    expect_error(g.req({"type": "study.priority", "study_uids": []}),
                 "missing_field", "no study asked")
    # Anything still queued for the gateway comes before this reply.
    r = g.req({"type": "gateway.status", "waiting": 0, "in_flight": 0,
               "done": 0, "failed": 0, "bytes_waiting": 0,
               "rate_bps": 0})
    expect(r.get("ok"), "gateway.status", r)

    text = "\n".join(got)
    for cid, what in [(c[1], "case id") for c in cases] + \
                     [(c[4], "question") for c in cases] + \
                     [("Private history", "history"), (Z, "unasked study")]:
        expect(cid not in text, "the gateway never sees a %s (%s)" %
               (what, cid), text[-600:])
    expect("priorities" not in [json.loads(t).get("type") for t in got],
           "no pushed priorities", text[-600:])

    u = Session(url, ca, R)
    expect_error(u.req({"type": "study.priority", "study_uids": [X]}),
                 "forbidden", "a requester's study.priority")

main(run)
PYEOF
    fail "$(tail -5 "$T_TMP/py.err")"
pass
