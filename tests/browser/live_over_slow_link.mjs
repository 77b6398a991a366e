// live_over_slow_link — issue 9's phone link, 400 kbit/s with 400 ms each
// way (linkemu): the page logs in and goes "Live" (its WebSocket's TLS
// and upgrade take over 2 s there, longer than the first attempt is
// given; each abandoned attempt gets twice the time), and a case created
// meanwhile reaches the open inbox.
import { test, seen } from './lib.mjs';

test(async (t) => {
    const srv = await t.server();
    const link = await t.link(srv, ['--rate', '400kbit', '--delay', '400ms',
                                    '--shared']);
    const page = await t.page(await t.context(), { url: link.url },
                              'demo-neuro', 60000);
    const req = await srv.login('demo-requester');
    await srv.createCase(req, { case_id: 'slow-link-1', question: 'Bleed?',
                                priority: 'stat', specialty: 'neurology' });
    await seen(page.locator('li[data-case-id="slow-link-1"]'),
               'the new case in the live inbox', 30000);
});
