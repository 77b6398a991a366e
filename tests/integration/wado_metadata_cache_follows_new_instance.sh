#!/bin/sh
# wado_metadata_cache_follows_new_instance: a series' WADO-RS metadata is
# served from the cache the second time (the same bytes, no rebuild), and
# an instance added to the series afterwards is in the next answer, at
# series and study level: the cache is keyed by the instances the index
# holds, never by the series alone.
. "$(dirname "$0")/lib.sh"

hashi_init
hashi_start --log-level debug
R=$(login demo-requester)
ST=$(study wado-cache 4 --size 64 --random-uids --patient-id WADO-CACHE)
set -- $(ls "$ST"/*.dcm)
assert_eq 200 "$(stow "$R" "$1" "$2" "$3")" "STOW of 3 instances"
st=$(attr_of "$1" StudyInstanceUID)
se=$(attr_of "$1" SeriesInstanceUID)
new=$(attr_of "$4" SOPInstanceUID)

meta() {    # PATH: GET its metadata; prints the SOP Instance UIDs, sorted
    assert_eq 200 "$(http GET "$1/metadata" "$R" \
        -H 'Accept: application/dicom+json')" "GET $1/metadata"
    jget "$T_TMP/body" \
        '" ".join(sorted(o["00080018"]["Value"][0] for o in d))'
}
hits() { grep -c "metadata of $1 instance(s) from the cache" \
    "$T_TMP/server.log"; }

S="/dicomweb/studies/$st/series/$se"
three=$(meta "$S")
assert_eq 3 "$(echo $three | wc -w)" "3 instances in the series metadata"
cp "$T_TMP/body" "$T_TMP/first"
assert_eq 0 "$(hits 3)" "the first answer is built, not cached"
assert_eq "$three" "$(meta "$S")" "the second answer"
assert_same_file "$T_TMP/first" "$T_TMP/body" "cached answer = built answer"
assert_eq 1 "$(hits 3)" "the second answer came from the cache"

assert_eq 200 "$(stow "$R" "$4")" "STOW of a 4th instance into the series"
four=$(meta "$S")
assert_eq 4 "$(echo $four | wc -w)" "4 instances after the STOW"
case " $four " in *" $new "*) ;; *) fail "the new instance is missing" ;; esac
assert_eq 0 "$(hits 4)" "the 4-instance answer was built afresh"
assert_eq "$four" "$(meta "/dicomweb/studies/$st")" "study metadata too"
pass
