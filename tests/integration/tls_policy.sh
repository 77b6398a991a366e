#!/bin/sh
# The HTTPS listener speaks TLS 1.2+ with AEAD ciphers only, offers ALPN
# http/1.1 only, presents a certificate valid for localhost/127.0.0.1, and
# never answers plain HTTP.
#
# A refusal only means something if the client could have connected: each
# "refused" case is first shown to work against a control server
# (openssl s_server with the same certificate and key, everything allowed).
. "$(dirname "$0")/lib.sh"

hashi_setup
KEY="$DATA/tls/key.pem"

# Weak choices need OpenSSL's security level 0 on the client side, or the
# client itself refuses before the server is asked.
OLD='ALL:@SECLEVEL=0'
CBC='AES128-SHA:AES256-SHA:AES128-SHA256:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA256:DHE-RSA-AES128-SHA:@SECLEVEL=0'

# handshake PORT s_client-args...: prints "PROTOCOL CIPHER ALPN" or
# "failed".
handshake() {
    _port=$1; shift
    echo | timeout 10 openssl s_client -connect "127.0.0.1:$_port" \
        -servername localhost "$@" >"$T_TMP/tls.out" 2>&1
    # "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" (or "(NONE)")
    proto=$(sed -n 's/^New, \([^,]*\), Cipher is .*/\1/p' "$T_TMP/tls.out")
    cipher=$(sed -n 's/^New, [^,]*, Cipher is //p' "$T_TMP/tls.out")
    alpn=$(sed -n 's/^ALPN protocol: *//p' "$T_TMP/tls.out" | head -1)
    case "$cipher" in
        ""|0000|"(NONE)") echo failed ;;
        *) echo "$proto $cipher ${alpn:-none}" ;;
    esac
}

CPORT=$(free_port)
openssl s_server -accept "127.0.0.1:$CPORT" -cert "$CACERT" -key "$KEY" \
    -cipher "$OLD" -alpn h2,http/1.1 -www >"$T_TMP/control.log" 2>&1 &
CONTROL=$!
at_exit "kill $CONTROL"
i=0
until handshake "$CPORT" >/dev/null && [ "$(handshake "$CPORT")" != failed ]; do
    i=$((i + 1)); [ $i -lt 50 ] || fail "control server did not start"
    sleep 0.1
done

# ---- refused: TLS 1.0, TLS 1.1, TLS 1.2 with CBC (non-AEAD) ciphers
for case in "-tls1 -cipher $OLD" "-tls1_1 -cipher $OLD" \
        "-tls1_2 -cipher $CBC"; do
    got=$(handshake "$CPORT" $case)
    assert_ne failed "$got" "control server with '$case'"
    got=$(handshake "$HPORT" $case)
    assert_eq failed "$got" "hashi-server with '$case'"
done
kill $CONTROL 2>/dev/null

# ---- accepted: TLS 1.2 AEAD suites and TLS 1.3
got=$(handshake "$HPORT" -tls1_2)
case "$got" in
    "TLSv1.2 "*GCM*|"TLSv1.2 "*CHACHA20*) ;;
    *) fail "TLS 1.2 default handshake gave '$got', want an AEAD suite" ;;
esac
for c in ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-GCM-SHA256; do
    got=$(handshake "$HPORT" -tls1_2 -cipher "$c")
    case "$got" in "TLSv1.2 $c "*) ok=1; break ;; esac
done
[ "${ok:-0}" = 1 ] || fail "no ECDHE AES128-GCM suite over TLS 1.2"
got=$(handshake "$HPORT" -tls1_3)
case "$got" in "TLSv1.3 TLS_"*) ;; *) fail "TLS 1.3 handshake gave '$got'" ;; esac

# ---- ALPN: http/1.1 only (h2 is broken in lws 4.1.6 for large bodies)
got=$(handshake "$HPORT" -alpn h2,http/1.1)
assert_eq http/1.1 "${got##* }" "ALPN chosen when h2 and http/1.1 offered"
# Offered only h2, the server either completes without ALPN or refuses
# (RFC 7301 allows a no_application_protocol alert); h2 it never picks.
got=$(handshake "$HPORT" -alpn h2)
case "$got" in
    failed|*" none") ;;
    *) fail "ALPN when only h2 is offered: '$got'" ;;
esac

# ---- the certificate verifies for localhost and 127.0.0.1
for name in localhost; do
    handshake "$HPORT" -CAfile "$CACERT" -verify_return_error \
        -verify_hostname "$name" >/dev/null
    assert_file_has "$T_TMP/tls.out" 'Verify return code: 0 \(ok\)' \
        "certificate check for host $name"
done
handshake "$HPORT" -CAfile "$CACERT" -verify_return_error \
    -verify_ip 127.0.0.1 >/dev/null
assert_file_has "$T_TMP/tls.out" 'Verify return code: 0 \(ok\)' \
    "certificate check for IP 127.0.0.1"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CACERT" \
    "https://localhost:$HPORT/healthz")
assert_eq 200 "$code" "curl https://localhost with the dev CA"

# ---- no plain HTTP on the HTTPS port
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    "http://127.0.0.1:$HPORT/healthz")
assert_ne 200 "$code" "plain HTTP GET /healthz on the TLS port"
healthz_ok "the TLS probes"

pass
