// viewer_overlay_never_lies — the sequence: cut the link, press
// Lung, go to slice 5.  While the link is down the overlay keeps
// describing the image on screen (its slice and window, read from the
// <img> itself), and the viewer says why the new one is missing; once the
// link is back the asked image (slice 5, lung window) appears with no user
// action, and the overlay says so.

import fs from 'node:fs';
import path from 'node:path';
import { test, check, eq, until, ct12Case, log } from './lib.mjs';

const WIN = { default: 'Default window', lung: 'Lung W 1500 L -600' };

// [overlay text, what the shown image is] — they must always agree.
function shown(page) {
    return page.evaluate(() => {
        const img = document.querySelector('.viewer img.slice');
        return [document.querySelector('.viewer .overlay').textContent,
                img && img.getAttribute('src') ? img.dataset.index : null,
                img ? img.dataset.window : null];
    });
}

async function agrees(page, what) {
    const [text, idx, win] = await shown(page);
    eq(`${idx}/12 · ${WIN[win]}`, text, `${what}: overlay vs image shown`);
    return [idx, win];
}

test(async (t) => {
    const { srv } = await ct12Case(t, {
        case_id: 'ov-case', question: 'Nodule?', priority: 'urgent',
        specialty: 'neurology',
    });
    const down = path.join(t.tmp, 'link.down');
    const link = await t.link(srv, ['--down-file', down]);
    const page = await t.page(await t.context(), { url: link.url },
                              'demo-neuro');
    await page.click('li[data-case-id="ov-case"] a');
    await until(async () => (await shown(page))[1] === '7',
                'the middle slice shows');
    eq(['7', 'default'], await agrees(page, 'at first'), 'first image');

    fs.writeFileSync(down, '');
    await until(async () => (await page.textContent('#conn')) !== 'Live',
                'the page sees the cut');
    await page.click('.presets button[data-preset="lung"]');
    await page.focus('.viewer .stage');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('ArrowUp');
    await until(async () => (await page.textContent(
        '.viewer .slice-count')) === 'Slice 5 of 12',
                'the slider is at slice 5');
    await until(async () => /No connection to the server/.test(
        await page.textContent('.viewer .stage-msg')),
                'the viewer says why slice 5 is missing');
    log('message:', await page.textContent('.viewer .stage-msg'));
    for (let i = 0; i < 10; i++) {
        eq(['7', 'default'], await agrees(page, `cut, sample ${i}`),
           'the image on screen while the link is down');
        await new Promise((r) => setTimeout(r, 200));
    }

    fs.unlinkSync(down);
    await until(async () => (await shown(page))[1] === '5',
                'slice 5 appears once the link is back', 20000);
    eq(['5', 'lung'], await agrees(page, 'after the cut'), 'image shown');
    await until(() => page.evaluate(() =>
        document.querySelector('.viewer .stage-msg').hidden),
                'the error message goes');
    check(/window=lung/.test(await page.evaluate(() =>
        document.querySelector('.viewer img.slice').dataset.url)),
          'the lung window was rendered');
});
