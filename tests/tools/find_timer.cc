/*
 * find_timer — time Study Root C-FIND queries over one association, for
 * bench/cfind.py (findscu would add a process start and an association
 * to every query).  Reads one query a line from stdin, KEY=VALUE pairs
 * separated by spaces (e.g. "PatientID=B00042" or "StudyDate=20240105"),
 * sends it at STUDY level asking for StudyInstanceUID, PatientID,
 * PatientName, StudyDate, ModalitiesInStudy and
 * NumberOfStudyRelatedInstances, and prints "MILLISECONDS MATCHES" a line:
 *
 *   find_timer HOST PORT CALLING_AE CALLED_AE < queries
 *
 * Exit 0, 1 on usage, 2 when the association or a query fails.
 */
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctk.h"

#include <string.h>
#include <time.h>

#include "scu_open.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: find_timer HOST PORT CALLING CALLED "
                        "< queries\n");
        return 1;
    }
    DcmSCU scu;
    T_ASC_PresentationContextID pres = scu_open(
        scu, argv, UID_FINDStudyRootQueryRetrieveInformationModel, 120,
        "find_timer");
    if (!pres)
        return 2;
    OFCondition c;
    char line[1024];
    int rc = 0;
    while (!rc && fgets(line, sizeof line, stdin)) {
        DcmDataset q;
        q.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
        const DcmTagKey keys[] = {
            DCM_StudyInstanceUID, DCM_PatientID, DCM_PatientName,
            DCM_StudyDate, DCM_ModalitiesInStudy,
            DCM_NumberOfStudyRelatedInstances,
        };
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
            q.insertEmptyElement(keys[i]);
        for (char *save = NULL, *kv = strtok_r(line, " \n", &save); kv;
             kv = strtok_r(NULL, " \n", &save)) {
            char *eq = strchr(kv, '=');
            DcmTagKey tag;
            if (eq) {
                *eq = 0;
                const DcmDictEntry *de = dcmDataDict.rdlock()
                                             .findEntry(kv);
                if (de)
                    tag = de->getKey();
                dcmDataDict.rdunlock();
            }
            if (!eq || tag == DcmTagKey()) {
                fprintf(stderr, "find_timer: bad key '%s'\n", kv);
                return 1;
            }
            q.putAndInsertString(tag, eq + 1);
        }
        OFList<QRResponse *> rsp;
        double t0 = now_ms();
        c = scu.sendFINDRequest(pres, &q, &rsp);
        double ms = now_ms() - t0;
        unsigned matches = 0, status = 0xFFFF;
        for (OFListIterator(QRResponse *) it = rsp.begin(); it != rsp.end();
             ++it) {
            if ((*it)->m_status == 0xFF00 || (*it)->m_status == 0xFF01)
                matches++;
            else
                status = (*it)->m_status;
            delete *it;
        }
        if (c.bad() || status != 0) {
            fprintf(stderr, "find_timer: C-FIND: %s, status %04x\n",
                    c.text(), status);
            rc = 2;
        }
        printf("%.3f %u\n", ms, matches);
    }
    scu.releaseAssociation();
    return rc;
}
