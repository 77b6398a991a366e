#!/bin/sh
# The DICOM adapter and the hashi.v1 codec run valgrind-clean on hostile
# input: parse (incl. truncated, random, huge lengths, 50,000-deep nesting,
# pydicom's odd files), render, transcode and de-identify, WADO-RS
# frames, bulk data and DICOM JSON (test_dicomweb), the DICOM listener
# (its threads, associations at once, stop); every frame of the codec's
# malformed variants.  ASan cannot see inside Debian's uninstrumented
# DCMTK (API-NOTES pitfall 1 hid there), so this job uses valgrind.
#
# test_charsets is left out: glibc's dynamic loader, when iconv loads its
# conversion modules, trips a known valgrind false positive.
set -eu
: "${HASHI_BUILD:?run from tests/run.sh}"
VG="valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect
    --error-exitcode=99 -q"

for filter in 'test_uid*' 'test_parse*' 'test_nesting*' 'test_bad*' \
              'test_pydicom_odd*' 'test_render*' 'test_presets' \
              'test_rle*' 'test_transcode*' 'test_pixels*' 'test_scp*'; do
    echo "== test_dicom $filter"
    out=$(DICOM_TEST_FILTER="$filter" $VG "$HASHI_BUILD/tests/test_dicom" 2>&1) || {
        echo "$out" | tail -40
        echo "FAIL: valgrind or test failure in test_dicom $filter"
        exit 1
    }
    echo "$out" | grep -q 'PASSED  \] [1-9]' || {
        echo "$out" | tail -20
        echo "FAIL: no test matched $filter"
        exit 1
    }
done

echo "== test_deid"
out=$($VG "$HASHI_BUILD/tests/test_deid" 2>&1) || {
    echo "$out" | tail -40
    echo "FAIL: valgrind or test failure in test_deid"
    exit 1
}

echo "== test_dicomweb"
out=$($VG "$HASHI_BUILD/tests/test_dicomweb" 2>&1) || {
    echo "$out" | tail -40
    echo "FAIL: valgrind or test failure in test_dicomweb"
    exit 1
}

echo "== test_msg"
$VG "$HASHI_BUILD/tests/test_msg" >/dev/null 2>"${TMPDIR:-/tmp}/vg_msg.$$" || {
    tail -40 "${TMPDIR:-/tmp}/vg_msg.$$"
    rm -f "${TMPDIR:-/tmp}/vg_msg.$$"
    echo "FAIL: valgrind or test failure in test_msg"
    exit 1
}
rm -f "${TMPDIR:-/tmp}/vg_msg.$$"
echo "valgrind clean"
