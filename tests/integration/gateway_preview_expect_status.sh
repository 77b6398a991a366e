#!/bin/sh
# The gateway's side of hashi.v1 with its HTTP views (study.priority:
# gateway_learns_only_priorities.sh): a
# preview uploaded before any instance, served at
# /api/studies/{uid}/preview to who may see the case and replaced by a
# newer one; study.expect making a case show "N of M" (REST and
# images.arrived); gateway.status listed at /api/gateways for the clinic.
. "$(dirname "$0")/lib.sh"

hashi_init
user_add req-b "Clinic B" requester
GW=$("$SERVER" gateway add --data "$DATA" --clinic "Demo Rural Clinic" \
    --name gw1 2>>"$T_TMP/admin.log") || fail "gateway add"
hashi_start
A=$(login demo-requester)
B=$(login req-b)
N=$(login demo-neuro)
C=$(login demo-cardio)
dir=$(study upload-gw 2 --size 128 --seed 43)
f1=$(ls "$dir"/*.dcm | sed -n 1p)
st=$(attr_of "$f1" StudyInstanceUID)

cd "$HASHI_ROOT"
$PY - "$HURL" "$CACERT" "$GW" "$A" "$B" "$N" "$C" "$f1" "$st" \
    2>"$T_TMP/py.err" <<'PYEOF' || fail "$(tail -5 "$T_TMP/py.err")"
import json
import sys
import time
sys.path.insert(0, "tests/integration")
from uplink import (Session, sha256_of, upload, http, expect, expect_error,
                    main)

def run(a):
    url, ca, GW, A, B, N, C, f1, st = a
    g = Session(url, ca, GW, "hashi-gateway")
    expect(g.welcome["user"]["role"] == "gateway", "a gateway", g.welcome)
    code, body = http(url, ca, "POST", "/api/cases", A, {
        "case_id": "c-s", "question": "Bleed?", "priority": "stat",
        "specialty": "neurology", "study_uids": [st]})
    expect(code == 201, "case c-s created", body.decode())

    # a preview before any instance of the study
    jpeg1 = b"\xff\xd8\xff\xe0" + b"one" * 300
    m = upload(g, "p-1", jpeg1, kind="preview", study_uid=st)
    expect(m["type"] == "upload.done" and m["study_uid"] == st and
           m["status"] == "stored" and "sop_instance_uid" not in m,
           "preview stored", m)
    for who, want in ((A, 200), (N, 200), (B, 404), (C, 404)):
        code, body = http(url, ca, "GET", "/api/studies/%s/preview" % st,
                          who, None)
        expect(code == want, "preview GET: %d" % want, code)
        if code == 200:
            expect(body == jpeg1, "the preview's bytes", len(body))
    m = upload(g, "p-1b", jpeg1, kind="preview", study_uid=st)
    expect(m["type"] == "upload.done" and m["status"] == "duplicate",
           "the same preview again: duplicate", m)
    expect_error(upload(g, "p-bad", b"GIF89a" + b"x" * 50, kind="preview",
                        study_uid=st), "bad_field", "a preview not JPEG")

    # study.expect -> "0 of 2", then an instance -> "1 of 2"
    r = g.req({"type": "study.expect", "study_uid": st, "instances": 2,
               "priority": "stat"})
    expect(r.get("ok") and r["result"]["study"] == {
        "study_uid": st, "expected": 2, "received": 0},
        "study.expect result", r)
    b = Session(url, ca, B)
    expect_error(b.req({"type": "study.expect", "study_uid": st,
                        "instances": 5}), "not_found",
                 "another clinic's study.expect")
    code, body = http(url, ca, "GET", "/api/cases/c-s", A, None)
    expect(json.loads(body)["case"]["images"] ==
           {"received": 0, "expected": 2}, "case images 0 of 2",
           body.decode())
    m = upload(g, "i-1", open(f1, "rb").read())
    expect(m.get("status") == "stored", "instance stored", m)
    code, body = http(url, ca, "GET", "/api/cases/c-s", A, None)
    expect(json.loads(body)["case"]["images"] ==
           {"received": 1, "expected": 2}, "case images 1 of 2",
           body.decode())
    for i in range(100):
        code, body = http(url, ca, "GET", "/api/events?after=0", A, None)
        ev = [e for e in json.loads(body)["events"]
              if e["kind"] == "images.arrived"]
        if ev:
            break
        time.sleep(0.1)
    expect(ev and ev[0]["body"]["expected"] == 2 and
           ev[0]["body"]["images"] == {"received": 1, "expected": 2},
           "images.arrived carries expected", ev)

    # a newer preview replaces the old one
    jpeg2 = b"\xff\xd8\xff\xe1" + b"two" * 400
    m = upload(g, "p-2", jpeg2, kind="preview", study_uid=st)
    expect(m.get("status") == "stored", "newer preview stored", m)
    code, body = http(url, ca, "GET", "/api/studies/%s/preview" % st, N,
                      None)
    expect(code == 200 and body == jpeg2, "the newer preview served",
           (code, len(body)))

    # gateway.status, and who may send and see it
    st_msg = {"type": "gateway.status", "waiting": 3, "in_flight": 1,
              "done": 7, "failed": 0, "bytes_waiting": 4096,
              "rate_bps": 1000, "eta_s": 4, "last_error": "link down"}
    r = g.req(st_msg)
    expect(r.get("ok") and r["result"] == {}, "gateway.status ok", r)
    a_s = Session(url, ca, A)
    expect_error(a_s.req(st_msg), "forbidden", "a user's gateway.status")
    code, body = http(url, ca, "GET", "/api/gateways", A, None)
    gws = json.loads(body)["gateways"]
    want = dict(st_msg)
    del want["type"]
    expect(code == 200 and len(gws) == 1 and gws[0]["name"] == "gw1" and
           gws[0]["status"] == want and gws[0]["last_seen"] > 0,
           "GET /api/gateways", body.decode())
    code, body = http(url, ca, "GET", "/api/gateways", B, None)
    expect(code == 200 and json.loads(body)["gateways"] == [],
           "clinic B has no gateways", body.decode())
    code, body = http(url, ca, "GET", "/api/gateways", N, None)
    expect(code == 403, "a specialist: 403", code)

main(run)
PYEOF
pass
