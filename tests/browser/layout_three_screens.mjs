// layout_three_screens — at 360x740 (phone), 740x360 (phone turned) and
// 1280x800 (desktop): opening a case shows the image in the first screen
// (at 1280x800 the slice bar and window presets too); every visible
// control is at least 44x44 px (a checkbox or radio by its label); nothing
// scrolls sideways.  Screenshots of the inbox, the case and the viewer
// (full screen) at each size are kept in build/test-logs/browser/.

import fs from 'node:fs';
import path from 'node:path';
import { test, check, eq, until, ct12Case, log, SCREENS as SIZES,
         SHOTS } from './lib.mjs';

// Controls under 44 px and the widths that overflow, measured in the page.
function measure(page) {
    return page.evaluate(() => {
        const small = [];
        for (const e of document.querySelectorAll(
            'button, a, input, select, textarea, summary')) {
            let r = e.getBoundingClientRect();
            if (!r.width || !r.height || e.closest('[hidden]'))
                continue;
            if (e.matches('input[type=checkbox], input[type=radio]') &&
                e.closest('label'))
                r = e.closest('label').getBoundingClientRect();
            if (r.width < 43.5 || r.height < 43.5)
                small.push(`${e.outerHTML.slice(0, 70)} ` +
                           `${Math.round(r.width)}x${Math.round(r.height)}`);
        }
        return { small, scroll: document.documentElement.scrollWidth,
                 inner: window.innerWidth };
    });
}

async function shot(page, name) {
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

async function fits(page, what) {
    const m = await measure(page);
    eq([], m.small, `${what}: controls under 44x44 px`);
    check(m.scroll <= m.inner,
          `${what}: no horizontal overflow (${m.scroll} > ${m.inner})`);
}

test(async (t) => {
    const { srv } = await ct12Case(t, {
        case_id: 'lay-case', question: 'Sudden aphasia since 09:10: bleed? ' +
            'Candidate for thrombolysis?', priority: 'stat',
        specialty: 'neurology', patient: { age: 71, sex: 'M' },
        history: 'Atrial fibrillation, on apixaban.\nBP 185/100. GCS 13.',
    });
    for (const size of SIZES) {
        const ctx = await t.context({ viewport: size.viewport,
                                      isMobile: !!size.touch,
                                      hasTouch: !!size.touch });
        const page = await t.page(ctx, srv, 'demo-neuro');
        await until(async () => (await page.locator(
            'li[data-case-id="lay-case"]').count()) === 1, 'case listed');
        await fits(page, `${size.name} inbox`);
        await shot(page, `inbox-${size.name}`);

        await page.click('li[data-case-id="lay-case"] a');
        await until(() => page.evaluate(() => {
            const i = document.querySelector('.viewer img.slice');
            return i && i.naturalWidth > 0;
        }), `${size.name}: the image loads`);
        const box = await page.evaluate(() => {
            const r = (s) => {
                const b = document.querySelector(s).getBoundingClientRect();
                return { top: b.top, bottom: b.bottom, height: b.height };
            };
            return { stage: r('.viewer .stage'), bar: r('.viewer .slice-bar'),
                     presets: r('.viewer .presets'), h: window.innerHeight,
                     y: window.scrollY };
        });
        log(size.name, JSON.stringify(box));
        eq(0, box.y, `${size.name}: the case opens at its top`);
        const seen = Math.min(box.stage.bottom, box.h) - box.stage.top;
        check(seen >= Math.min(box.stage.height, box.h) * 0.5 &&
              seen >= 150,
              `${size.name}: the image is in the first screen ` +
              `(${Math.round(seen)} px of it visible)`);
        if (size.name === '1280x800') {
            check(box.stage.bottom <= box.h && box.bar.bottom <= box.h &&
                  box.presets.bottom <= box.h,
                  `1280x800: image, slice bar and presets above the fold ` +
                  `${JSON.stringify(box)}`);
        }
        await fits(page, `${size.name} case`);
        await shot(page, `case-${size.name}`);
        await page.click('.viewer button.full');
        await until(() => page.evaluate(() => !!document.fullscreenElement),
                    `${size.name}: viewer full screen`);
        await shot(page, `viewer-${size.name}`);
        await ctx.close();
    }
});
