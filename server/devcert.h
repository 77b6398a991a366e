/*
 * devcert — a self-signed development certificate, so that `make run`
 * serves HTTPS with no set-up.  Not for production: real deployments pass
 * --cert/--key.
 *
 * The certificate: EC P-256 key, CN=localhost, O=Hashi development,
 * subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1, valid from now for
 * 365 days, signed with SHA-256, basicConstraints CA:FALSE,
 * extendedKeyUsage serverAuth.  Both files are PEM, written durably
 * (temp file, fsync, rename); the key file has mode 0600, the
 * certificate 0644.
 */
#ifndef HASHI_DEVCERT_H
#define HASHI_DEVCERT_H

#include "../proto/util.h"

#define DEVCERT_DAYS 365

/* Create key_path and cert_path (their directories must exist).  Existing
 * files are replaced.  ERR_IO / ERR_INTERNAL with a reason. */
int devcert_create(const char *cert_path, const char *key_path,
                   struct err *e);

#endif
