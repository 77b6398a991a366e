#!/bin/sh
# Rendered images are kept in the server's render cache and named by a
# strong ETag: the second request for the same image is served from the
# cache (audited "cached") with the same bytes and ETag; If-None-Match
# with that ETag (or *) is 304 with no body and no rendering; another
# window, viewport, frame or quality is another image and another ETag;
# a preset and its numbers are the same image; a stale ETag gets the
# image.  Every answer is still scoped: no token is 401.  Both the image
# and its 304 say "Cache-Control: private, max-age=60": no shared cache
# keeps a patient's image, the browser only for a minute.
. "$(dirname "$0")/lib.sh"

ST=$(study ct3 3 --patient-id RENDER3 --seed 33) || exit 1
hashi_setup
tok=$(login demo-admin) || exit 1
assert_eq 200 "$(stow "$tok" "$ST"/*.dcm)" "STOW-RS of 3 slices"

f="$ST/CT00002.dcm"
st=$(attr_of "$f" StudyInstanceUID)
se=$(attr_of "$f" SeriesInstanceUID)
sop=$(attr_of "$f" SOPInstanceUID)
R="/dicomweb/studies/$st/series/$se/instances/$sop/rendered"

get() {    # QUERY [extra curl args...]: status; body in $T_TMP/body
    _q=$1; shift
    rm -f "$T_TMP/body"     # curl writes no file for an empty body
    http GET "$R$_q" "$tok" -H 'Accept: image/jpeg' "$@"
}
renders() {    # how many "render" audit lines say "cached" / not
    grep -E '"action": *"render"' "$DATA/audit.log" |
        grep -c "$1" || true
}

# ---- first and second request: rendered once, then from the cache
assert_eq 200 "$(get "")" "first rendered request"
cp "$T_TMP/body" "$T_TMP/first.jpg"
etag=$(header ETag)
case "$etag" in
    \"????????????????????????????????\") ;;
    *) fail "ETag '$etag' is not a strong 32-hex-digit tag" ;;
esac
assert_eq "512 512" "$($PY "$DW" jpeg "$T_TMP/first.jpg")" "JPEG size"
assert_eq 0 "$(renders cached)" "renders served from the cache so far"
assert_eq "private, max-age=60" "$(header Cache-Control)" \
    "Cache-Control of a rendered image"

assert_eq 200 "$(get "")" "second rendered request"
assert_same_file "$T_TMP/first.jpg" "$T_TMP/body" \
    "bytes of the cached image"
assert_eq "$etag" "$(header ETag)" "ETag of the cached image"
assert_eq 1 "$(renders cached)" "renders served from the cache"

# ---- conditional requests: 304, empty, nothing rendered
assert_eq 304 "$(get "" -H "If-None-Match: $etag")" "If-None-Match: ETag"
assert_eq 0 "$(cat "$T_TMP/body" 2>/dev/null | wc -c | tr -d ' ')" \
    "bytes in the body of the 304"
assert_eq "$etag" "$(header ETag)" "ETag of the 304"
assert_eq "private, max-age=60" "$(header Cache-Control)" \
    "Cache-Control of the 304"
assert_eq 304 "$(get "" -H "If-None-Match: \"0000\", $etag")" \
    "If-None-Match: a list holding the ETag"
assert_eq 304 "$(get "" -H 'If-None-Match: *')" "If-None-Match: *"
stale='"00000000000000000000000000000000"'
assert_eq 200 "$(get "" -H "If-None-Match: $stale")" \
    "If-None-Match: another tag"
assert_same_file "$T_TMP/first.jpg" "$T_TMP/body" "image for a stale tag"

# ---- other options: other images, other tags; a preset is its numbers
tags="$etag"
for q in "?window=40,80" "?window=500,2000" "?viewport=256,256" \
         "?quality=50" "?window=40,80&viewport=256,256"; do
    assert_eq 200 "$(get "$q")" "rendered$q"
    t=$(header ETag)
    for seen in $tags; do
        assert_ne "$seen" "$t" "ETag of rendered$q vs an earlier one"
    done
    tags="$tags $t"
done
assert_eq 200 "$(get "?window=40,80,linear")" "rendered?window=40,80,linear"
brain=$(header ETag)
assert_eq 200 "$(get "?window=brain")" "rendered?window=brain"
assert_eq "$brain" "$(header ETag)" "ETag of the brain preset vs 40,80"
# frame 1 of a single-frame instance is the instance's image
assert_eq 200 "$(http GET "${R%/rendered}/frames/1/rendered" "$tok" \
                 -H 'Accept: image/jpeg')" "frames/1/rendered"
assert_eq "$etag" "$(header ETag)" "ETag of frames/1 vs the whole instance"
assert_eq 404 "$(http GET "${R%/rendered}/frames/2/rendered" "$tok" \
                 -H 'Accept: image/jpeg')" "frames/2/rendered of one frame"

# ---- scoping still first: no token, no image, even with the tag
code=$(curl -sS --cacert "$CACERT" -o /dev/null -w '%{http_code}' \
       -H "If-None-Match: $etag" "$HURL$R")
assert_eq 401 "$code" "rendered without a token"
pass
