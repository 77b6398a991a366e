/*
 * commit_scu — a Storage Commitment SCU (Push Model) for the tests:
 * Debian 12's dcmtk ships none.  Sends one N-ACTION (Request Storage
 * Commitment) for the given instances, then waits on the same association
 * for the N-EVENT-REPORT and prints what it says:
 *
 *   commit_scu HOST PORT CALLING_AE CALLED_AE CLASS UID [CLASS UID]...
 *
 * prints "action STATUS" (hex), "event TYPE", then one line per instance,
 * "committed UID" or "failed UID REASON" (hex), and exits 0 when an event
 * report arrived (whatever it says), 1 on usage, 2 on failure.
 */
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctk.h"

#include "scu_open.h"

static void print_items(DcmDataset *ds, const DcmTagKey &seq,
                        const char *what)
{
    DcmSequenceOfItems *sq = NULL;
    if (ds->findAndGetSequence(seq, sq).bad() || !sq)
        return;
    for (unsigned long i = 0; i < sq->card(); i++) {
        OFString uid;
        Uint16 reason = 0;
        sq->getItem(i)->findAndGetOFString(DCM_ReferencedSOPInstanceUID,
                                           uid);
        if (sq->getItem(i)->findAndGetUint16(DCM_FailureReason,
                                             reason).good())
            printf("%s %s %04x\n", what, uid.c_str(), reason);
        else
            printf("%s %s\n", what, uid.c_str());
    }
}

int main(int argc, char **argv)
{
    if (argc < 7 || (argc - 5) % 2) {
        fprintf(stderr, "usage: commit_scu HOST PORT CALLING CALLED "
                        "CLASS UID [CLASS UID]...\n");
        return 1;
    }
    DcmSCU scu;
    T_ASC_PresentationContextID pres = scu_open(
        scu, argv, UID_StorageCommitmentPushModelSOPClass, 20, "commit_scu");
    if (!pres)
        return 2;
    DcmDataset rq;
    char txn[65];
    dcmGenerateUniqueIdentifier(txn);
    rq.putAndInsertString(DCM_TransactionUID, txn);
    for (int i = 5; i + 1 < argc; i += 2) {
        DcmItem *it = NULL;
        rq.findOrCreateSequenceItem(DCM_ReferencedSOPSequence, it, -2);
        it->putAndInsertString(DCM_ReferencedSOPClassUID, argv[i]);
        it->putAndInsertString(DCM_ReferencedSOPInstanceUID, argv[i + 1]);
    }
    Uint16 status = 0xFFFF;
    OFCondition c = scu.sendACTIONRequest(
        pres, UID_StorageCommitmentPushModelSOPInstance, 1, &rq, status);
    if (c.bad()) {
        fprintf(stderr, "commit_scu: N-ACTION: %s\n", c.text());
        return 2;
    }
    printf("action %04x\n", status);
    int rc = 0;
    if (status == 0) {
        DcmDataset *ev = NULL;
        Uint16 type = 0;
        c = scu.handleEVENTREPORTRequest(ev, type, 20);
        OFString got;
        if (c.good() && ev)
            ev->findAndGetOFString(DCM_TransactionUID, got);
        if (c.bad() || !ev || got != txn) {
            fprintf(stderr, "commit_scu: N-EVENT-REPORT: %s\n",
                    c.bad() ? c.text() : "not for our transaction");
            rc = 2;
        } else {
            printf("event %u\n", type);
            print_items(ev, DCM_ReferencedSOPSequence, "committed");
            print_items(ev, DCM_FailedSOPSequence, "failed");
        }
        delete ev;
    }
    scu.releaseAssociation();
    return rc;
}
