/*
 * scu_open.h — the one association set-up of the C++ test peers in
 * tests/tools (header only: each tool is one file, built alone).
 */
#ifndef HASHI_SCU_OPEN_H
#define HASHI_SCU_OPEN_H

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmnet/scu.h"
#include "dcmtk/oflog/oflog.h"

#include <stdio.h>
#include <stdlib.h>

/* Associate from argv[3] to argv[4] at argv[1]:argv[2] proposing one
 * SOP class in Explicit VR LE, DIMSE timeout `timeout` seconds.  The
 * accepted context's id, or 0 after printing why (prefixed by tool). */
static T_ASC_PresentationContextID scu_open(DcmSCU &scu, char **argv,
                                            const char *sop_class,
                                            int timeout, const char *tool)
{
    OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
    scu.setPeerHostName(argv[1]);
    scu.setPeerPort((Uint16)atoi(argv[2]));
    scu.setAETitle(argv[3]);
    scu.setPeerAETitle(argv[4]);
    scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    scu.setDIMSETimeout((Uint32)timeout);
    scu.setACSETimeout((Uint32)timeout);
    OFList<OFString> xfers;
    xfers.push_back(UID_LittleEndianExplicitTransferSyntax);
    scu.addPresentationContext(sop_class, xfers);
    OFCondition c = scu.initNetwork();
    if (c.good())
        c = scu.negotiateAssociation();
    T_ASC_PresentationContextID pres = c.good() ?
        scu.findPresentationContextID(sop_class,
                                      UID_LittleEndianExplicitTransferSyntax)
        : 0;
    if (!pres)
        fprintf(stderr, "%s: association: %s\n", tool,
                c.bad() ? c.text() : "context not accepted");
    return pres;
}

#endif
