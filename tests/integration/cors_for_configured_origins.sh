#!/bin/sh
# cors_for_configured_origins: a viewer served from a configured --origin
# may use the DICOMweb API with a bearer token: its preflight (OPTIONS
# with Access-Control-Request-Method/Headers, no credentials) gets 204
# with Allow-Origin naming it exactly, Allow-Methods, Allow-Headers with
# Authorization and Max-Age; its GETs get Allow-Origin and Expose-Headers
# (a 401 too, so it can read why).  Another origin, or "null", gets no
# CORS header at all, and never Allow-Credentials: the cookie stays a
# same-origin credential.
. "$(dirname "$0")/lib.sh"

VIEWER=http://127.0.0.1:3999
hashi_init
hashi_start --origin "$VIEWER"
tok=$(login demo-admin)

preflight() {    # ORIGIN: status of an OPTIONS preflight for a QIDO GET
    http OPTIONS /dicomweb/studies "" -H "Origin: $1" \
        -H 'Access-Control-Request-Method: GET' \
        -H 'Access-Control-Request-Headers: authorization, accept'
}
lower() { tr 'A-Z' 'a-z'; }

assert_eq 204 "$(preflight "$VIEWER")" "preflight from the viewer"
assert_eq "$VIEWER" "$(header Access-Control-Allow-Origin)" "Allow-Origin"
case "$(header Access-Control-Allow-Methods)" in
    *GET*) ;; *) fail "Allow-Methods lacks GET" ;;
esac
case "$(header Access-Control-Allow-Headers | lower)" in
    *authorization*accept*|*accept*authorization*) ;;
    *) fail "Allow-Headers lacks Authorization or Accept" ;;
esac
assert_ge 60 "$(header Access-Control-Max-Age)" "Max-Age"
assert_eq "" "$(header Access-Control-Allow-Credentials)" \
    "no Allow-Credentials on the preflight"

# The real request, with the bearer token.
assert_eq 200 "$(http GET /dicomweb/studies "$tok" -H "Origin: $VIEWER" \
    -H 'Accept: application/dicom+json')" "cross-origin QIDO"
assert_eq "$VIEWER" "$(header Access-Control-Allow-Origin)" \
    "Allow-Origin on the answer"
case "$(header Access-Control-Expose-Headers | lower)" in
    *content-type*) ;; *) fail "Expose-Headers lacks Content-Type" ;;
esac
assert_eq "" "$(header Access-Control-Allow-Credentials)" \
    "no Allow-Credentials on the answer"
assert_eq 401 "$(http GET /dicomweb/studies "" -H "Origin: $VIEWER")" \
    "cross-origin QIDO without a token"
assert_eq "$VIEWER" "$(header Access-Control-Allow-Origin)" \
    "Allow-Origin on the 401"

# Other origins: nothing.
for o in http://127.0.0.1:4000 https://evil.example null; do
    code=$(preflight "$o")
    assert_ne 204 "$code" "preflight from $o"
    assert_eq "" "$(header Access-Control-Allow-Origin)" \
        "no Allow-Origin for the preflight from $o"
    assert_eq 200 "$(http GET /dicomweb/studies "$tok" -H "Origin: $o")" \
        "GET from $o (a non-browser client may)"
    assert_eq "" "$(header Access-Control-Allow-Origin)" \
        "no Allow-Origin for $o"
    assert_eq "" "$(header Access-Control-Allow-Methods)" \
        "no Allow-Methods for $o"
done
# Outside the DICOMweb API: no CORS even for the viewer.
assert_eq 200 "$(http GET /api/me "$tok" -H "Origin: $VIEWER")" "/api/me"
assert_eq "" "$(header Access-Control-Allow-Origin)" "no CORS on /api"
pass
