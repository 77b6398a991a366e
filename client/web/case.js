// case — one case: the question and its context, the actions the user may
// take (claim; close — after a confirmation — or reopen for the
// requesting side), its timeline (sent, delivered, opened, claimed,
// answered...), the images (viewer.js), the chat thread, and the answer
// (its form for the specialist who claimed the case; its author may
// amend it, the previous versions stay visible).  Everything updates
// live from the store's events; text typed into a form is never thrown
// away by an update.  A chat message that could not be sent stays in
// the thread ("sending…", then "retry") and is sent again, with the same
// message id, when the link is back: the server keeps it once.

import { api, h, fill, fmtTime, ago, patientLine, badges, ulid,
         imagesCount, overdueSince, countdown,
         tickCountdowns } from './util.js';
import { createViewer } from './viewer.js';
import { prearrivalCard } from './crew.js';
import { markSeen } from './inbox.js';

const OPEN = new Set(['new', 'claimed', 'reopened']);
const PREVIEW_RETRY_MS = 5000;  // no preview yet: ask again, doubling
const PREVIEW_RETRY_MAX_MS = 60000;
// Delivered and opened come with no event: while the case waits for a
// specialist, its timeline is asked again this often.
const TIMELINE_POLL_MS = 10000;
const STEP_TEXT = {
    sent: 'Sent', delivered: 'Delivered to', opened: 'Opened by',
    escalated: 'Escalated (deadline passed)', claimed: 'Claimed by',
    answered: 'Answered by', amended: 'Answer amended by',
    closed: 'Closed by', reopened: 'Reopened by',
    eta: 'Expected arrival (crew\'s ETA)', arrived: 'Arrived, study linked by',
};

function section(title, id, ...body) {
    return h('section', { class: 'card', 'aria-labelledby': id },
             h('h2', { id }, title), body);
}

export function mount(main, ctx, caseId) {
    const { me, store } = ctx;
    const isRequester = me.role === 'requester' || me.role === 'admin';
    const isSpecialist = me.role === 'specialist';
    let kase = null;
    let viewer = null;
    const messages = new Map();     // message_id -> Message
    const readSent = new Set();
    let dead = false;

    const head = h('header', { class: 'case-head' });
    const actions = h('div', { class: 'actions' });
    const actionMsg = h('p', { class: 'error', role: 'alert', hidden: true });
    const answerView = h('section', { class: 'card answer',
                                      'aria-labelledby': 'h-answer',
                                      hidden: true });
    const history = h('section', { class: 'card', 'aria-labelledby': 'h-hist',
                                   hidden: true });
    const timelineList = h('ol', { class: 'timeline' });
    const timeline = section('Timeline', 'h-timeline', timelineList);
    timeline.hidden = true;
    const imagesBox = h('div', { class: 'images-box' });
    // "N of M instances received", and the sender's preview of the study
    // (sent ahead of its instances) until they have all arrived.
    const imagesCountEl = h('p', { class: 'images-count', role: 'status' });
    const previewImg = h('img', { alt: 'Preview of the study, sent ahead ' +
                                       'of its images' });
    const preview = h('figure', { class: 'preview', hidden: true },
        previewImg,
        h('figcaption', { class: 'muted' },
          'Preview from the sender — the images follow'));
    const thread = h('ol', { class: 'thread', 'aria-live': 'polite',
                             'aria-relevant': 'additions' });
    const noMessages = h('p', { class: 'muted' }, 'No messages yet.');
    const chatForm = buildChatForm();
    const answerForm = buildAnswerForm();
    const body = h('article', { class: 'case' },
        h('div', { class: 'case-main' },
          h('a', { href: '#/inbox', class: 'back' }, '‹ Inbox'),
          head, answerView, actions, actionMsg, timeline, history),
        h('div', { class: 'case-images' },
          section('Images', 'h-images', imagesCountEl, preview, imagesBox)),
        h('div', { class: 'case-talk' },
          section('Discussion', 'h-chat', noMessages, thread, chatForm.el),
          answerForm.el));

    function showError(el, err) {
        el.textContent = err ? String(err.message || err) : '';
        el.hidden = !err;
    }

    // ---- header, actions, answer ------------------------------------------
    function renderHead() {
        const c = kase;
        const meta = [];
        if (c.specialty)
            meta.push(`Specialty: ${c.specialty}`);
        if (c.specialist)
            meta.push(`Asked: ${c.specialist}`);
        meta.push(`From ${c.requester} at ${c.clinic}`);
        const state = [];
        if (c.claimed_by)
            state.push(c.claimed_by === me.login
                ? 'Claimed by you' : `Claimed by ${c.claimed_by}`);
        const od = overdueSince(c);
        if (od)
            state.push(`unclaimed ${ago(c.created_at).replace(' ago', '')}` +
                       `, overdue since ${fmtTime(od)}`);
        const due = c.status === 'new' && c.due_at > Date.now();
        if (due)
            state.push(`${od ? 'escalates again' : 'escalates'} at ` +
                       `${fmtTime(c.due_at)} if unclaimed`);
        if (c.escalation_level > 0)
            state.push(`escalated (level ${c.escalation_level})`);
        fill(head,
             h('p', { class: 'badges' }, badges(c)),
             h('h1', { class: 'question' }, c.question),
             h('p', { class: 'patient' }, 'Patient: ', patientLine(c.patient)),
             h('p', { class: 'meta' }, meta.join(' · ')),
             h('p', { class: 'meta' },
               `Sent ${fmtTime(c.created_at)} (${ago(c.created_at)})`,
               state.length ? ` · ${state.join(' · ')}` : '',
               due ? h('span', { class: 'countdown' }, ' (in ',
                       h('span', { 'data-due': c.due_at },
                         countdown(c.due_at)), ')') : null));
        const pa = prearrivalCard(c, ctx, update);   // a crew's case
        if (pa)
            head.append(pa);
        document.title = `${c.priority === 'stat' ? 'STAT: ' : ''}` +
            `${c.question.slice(0, 40)} — Hashi`;
    }

    async function act(verb, payload, button) {
        showError(actionMsg, null);
        button.disabled = true;
        try {
            const d = await api('POST', `/api/cases/` +
                                `${encodeURIComponent(caseId)}/${verb}`,
                                payload || {});
            update(d.case);
        } catch (err) {
            showError(actionMsg, err.code === 'already_claimed'
                ? `Someone else claimed it first (${err.message}).` : err);
        } finally {
            button.disabled = false;
        }
    }

    function renderActions() {
        const c = kase;
        const out = [];
        if (isSpecialist && c.status === 'new') {
            const b = h('button', { type: 'button', class: 'primary big',
                                    id: 'claim' }, 'Claim this case');
            b.addEventListener('click', () => act('claim', {}, b));
            out.push(b);
        }
        if (isRequester && c.status !== 'closed') {
            // Closing ends the discussion: asked first, in the page.
            const b = h('button', { type: 'button', id: 'close' },
                        'Close case');
            const yes = h('button', { type: 'button', id: 'close-confirm',
                                      class: 'primary' }, 'Yes, close it');
            const no = h('button', { type: 'button', id: 'close-cancel' },
                         'Keep it open');
            const ask = h('div', { class: 'confirm', role: 'alertdialog',
                                   'aria-labelledby': 'close-q',
                                   hidden: true },
                h('p', { id: 'close-q' }, 'Close this case? Nobody can ' +
                  'write in it until it is reopened.'), yes, no);
            b.addEventListener('click', () => {
                ask.hidden = false;
                b.hidden = true;
                no.focus();
            });
            no.addEventListener('click', () => {
                ask.hidden = true;
                b.hidden = false;
                b.focus();
            });
            yes.addEventListener('click', () => act('close', {}, yes));
            out.push(b, ask);
        }
        if (isRequester && (c.status === 'answered' || c.status === 'closed')) {
            const reason = h('input', { type: 'text', id: 'reopen-reason',
                                        maxlength: '1000',
                                        placeholder: 'e.g. new symptoms' });
            const b = h('button', { type: 'button', id: 'reopen' },
                        'Reopen case');
            b.addEventListener('click', () => act('reopen',
                reason.value.trim() ? { reason: reason.value.trim() } : {},
                b));
            out.push(h('details', { class: 'reopen' },
                       h('summary', {}, 'Reopen…'),
                       h('label', { for: 'reopen-reason' },
                         'Reason (optional)'),
                       reason, b));
        }
        fill(actions, out);
        actions.hidden = !out.length;
    }

    function renderAnswer() {
        const a = kase.answer;
        answerView.hidden = !a;
        if (!a)
            return;
        const part = (title, text) => text
            ? [h('h3', {}, title), h('p', { class: 'text' }, text)] : null;
        const revs = a.revisions || [];
        const amend = a.by === me.login &&
            (kase.status === 'answered' || kase.status === 'closed')
            ? h('button', { type: 'button', id: 'amend' }, 'Amend answer')
            : null;
        if (amend)
            amend.addEventListener('click', () => answerForm.amend());
        fill(answerView,
             h('h2', { id: 'h-answer' }, 'Answer'),
             part('Impression', a.impression),
             part('Recommendation', a.recommendation),
             part('Details', a.text),
             h('p', { class: 'meta' }, `${a.by}, ${fmtTime(a.at)}`,
               revs.length ? h('strong', { class: 'amended' },
                               ` · amended at ${fmtTime(a.at)}`) : null),
             revs.length ? h('details', { class: 'revisions' },
                 h('summary', {}, revs.length === 1 ? 'Previous answer'
                                  : `Previous answers (${revs.length})`),
                 revs.slice().reverse().map((r) => h('div',
                     { class: 'revision' },
                     h('p', { class: 'meta' }, `${r.by}, ` +
                       `${fmtTime(r.at)}, replaced ` +
                       `${fmtTime(r.replaced_at)}`),
                     part('Impression', r.impression),
                     part('Recommendation', r.recommendation),
                     part('Details', r.text)))) : null,
             amend);
    }

    function renderTimeline() {
        const steps = kase.timeline || [];
        timeline.hidden = !steps.length;
        fill(timelineList, steps.map((s) => h('li',
            { class: `step step-${s.step}`, 'data-step': s.step },
            h('span', { class: 'step-name' }, STEP_TEXT[s.step] || s.step),
            s.by && s.step !== 'sent' ? ` ${s.by}` : '',
            s.by && s.step === 'sent' ? ` by ${s.by}` : '',
            ' · ',
            h('time', { datetime: new Date(s.at).toISOString() },
              fmtTime(s.at)),
            ` (${ago(s.at)})`)));
    }

    // The timeline is in case.get only: asked again after each change of
    // the case, and while delivered/opened may still come (no event).
    let timelineTimer = null;
    let timelineBusy = false;
    function loadTimeline(delay = 300) {
        clearTimeout(timelineTimer);
        timelineTimer = setTimeout(async () => {
            timelineTimer = null;
            if (dead || timelineBusy)
                return;
            timelineBusy = true;
            try {
                const d = await api('GET', `/api/cases/` +
                                    `${encodeURIComponent(caseId)}`);
                if (!dead && d.case.timeline) {
                    kase.timeline = d.case.timeline;
                    renderTimeline();
                }
            } catch (err) {
                // shown as it was; asked again at the next change
            } finally {
                timelineBusy = false;
            }
            if (!dead && !isSpecialist && kase.status === 'new')
                loadTimeline(TIMELINE_POLL_MS);
        }, delay);
    }

    function renderHistory() {
        history.hidden = !kase.history;
        fill(history, h('h2', { id: 'h-hist' }, 'Clinical history'),
             h('p', { class: 'text' }, kase.history || ''));
    }

    // ---- images received, preview ------------------------------------
    let previewTry = 0;
    let previewWait = PREVIEW_RETRY_MS;
    let previewTimer = null;
    let previewShown = false;
    function imagesComplete() {
        const im = kase.images || {};
        return im.received > 0 && (typeof im.expected !== 'number' ||
                                   im.received >= im.expected);
    }
    function renderImages() {
        const uids = kase.study_uids || [];
        const im = kase.images || {};
        imagesCountEl.hidden = !uids.length;
        imagesCountEl.textContent = `${imagesCount(im, ' of ')} ` +
            `instance${typeof im.expected !== 'number' && im.received === 1
                       ? '' : 's'} received`;
        preview.hidden = !previewShown || imagesComplete();
        if (!previewShown && !imagesComplete() && uids.length &&
            !previewTimer && !previewImg.getAttribute('src'))
            loadPreview();
    }
    // Tries the studies' previews in turn; none there yet: again later
    // (a preview is not an event; 5 s doubling to 60 s), or at once when
    // images arrive.
    function loadPreview(i = 0) {
        clearTimeout(previewTimer);
        previewTimer = null;
        const uids = kase.study_uids || [];
        if (dead || previewShown || i >= uids.length || imagesComplete()) {
            if (!dead && !previewShown && !imagesComplete()) {
                previewTimer = setTimeout(() => loadPreview(0), previewWait);
                previewWait = Math.min(previewWait * 2, PREVIEW_RETRY_MAX_MS);
            }
            return;
        }
        previewImg.onload = () => {
            previewShown = true;
            renderImages();
        };
        previewImg.onerror = () => loadPreview(i + 1);
        previewImg.src = `/api/studies/${encodeURIComponent(uids[i])}` +
            `/preview?try=${previewTry++}`;
    }

    // A newer version of the case (from a reply, or from the store when
    // fromStore: then it is not put back).
    function update(c, fromStore) {
        if (!c || c.case_id !== caseId)
            return;
        if (kase && (kase.updated_at || 0) > (c.updated_at || 0))
            return;
        const changed = kase && (c.updated_at || 0) > (kase.updated_at || 0);
        kase = Object.assign({}, kase, c);
        if (!fromStore)
            store.put(c);
        markSeen(me.login, kase);
        if (changed)
            loadTimeline();
        renderHead();
        renderTimeline();
        renderActions();
        renderAnswer();
        renderHistory();
        renderImages();
        answerForm.sync();
        chatForm.sync();
    }

    // ---- chat -------------------------------------------------------------
    function receiptText(m) {
        const others = (m.read_by || []).filter((u) => u !== me.login);
        if (others.length)
            return `Read by ${others.join(', ')}`;
        const dl = (m.delivered_to || []).filter((u) => u !== me.login);
        return dl.length ? `Delivered to ${dl.join(', ')}` : 'Sent';
    }

    function messageItem(m) {
        const mine = m.author === me.login;
        const li = h('li', { class: `msg${mine ? ' mine' : ''}`,
                             'data-message-id': m.message_id },
            h('p', { class: 'msg-head' },
              h('span', { class: 'author' }, mine ? 'You' : m.author), ' · ',
              h('time', {}, fmtTime(m.created_at))),
            h('p', { class: 'text' }, m.text));
        if (m.image && m.image.sop_uid) {
            const b = h('button', { type: 'button', class: 'link-btn' },
                        'Show the image this points at');
            b.addEventListener('click', async () => {
                if (!viewer || !(await viewer.show(m.image)))
                    b.textContent = 'That image is not here (yet)';
            });
            li.appendChild(b);
        }
        if (mine)
            li.appendChild(h('p', { class: 'receipt' }, receiptText(m)));
        return li;
    }

    function addMessage(m) {
        if (!m || m.case_id !== caseId)
            return;
        pending.delete(m.message_id);   // its li is replaced below
        markSeen(me.login, { case_id: caseId, updated_at: m.created_at });
        const old = messages.get(m.message_id);
        messages.set(m.message_id, Object.assign({}, old, m));
        putItem(m.message_id, messageItem(messages.get(m.message_id)));
        markRead(m);
    }

    // The thread's item of a message (sent, or still pending), in place.
    function putItem(messageId, li) {
        const cur = thread.querySelector(
            `li[data-message-id="${CSS.escape(messageId)}"]`);
        if (cur)
            cur.replaceWith(li);
        else
            thread.appendChild(li);
        noMessages.hidden = true;
    }

    // Messages written here and not yet confirmed by the server, by id:
    // {message_id, text, image, state: 'sending'|'failed', error}.
    const pending = new Map();

    function pendingItem(p) {
        const li = h('li', { class: `msg mine pending ${p.state}`,
                             'data-message-id': p.message_id },
            h('p', { class: 'msg-head' },
              h('span', { class: 'author' }, 'You')),
            h('p', { class: 'text' }, p.text));
        if (p.state === 'sending') {
            li.appendChild(h('p', { class: 'receipt' }, 'Sending…'));
        } else {
            const b = h('button', { type: 'button', class: 'retry' },
                        'Retry');
            b.addEventListener('click', () => sendPending(p));
            li.appendChild(h('p', { class: 'receipt error' },
                             `Not sent${p.error ? ` (${p.error})` : ''} `,
                             b));
        }
        return li;
    }

    function showPending(p) {
        putItem(p.message_id, pendingItem(p));
    }

    // Sends (again) with the same message id: a message that reached the
    // server before the link broke is not made twice.
    async function sendPending(p) {
        if (p.busy || !pending.has(p.message_id))
            return;
        p.busy = true;
        p.state = 'sending';
        showPending(p);
        const payload = { message_id: p.message_id, text: p.text };
        if (p.image)
            payload.image = p.image;
        try {
            const d = await api('POST', `/api/cases/` +
                                `${encodeURIComponent(caseId)}/messages`,
                                payload);
            addMessage(d.message);
        } catch (ex) {
            if (pending.has(p.message_id) && !dead) {
                p.state = 'failed';
                p.error = ex.message;
                showPending(p);
            }
        } finally {
            p.busy = false;
        }
    }

    function retryPending() {
        for (const p of pending.values())
            if (p.state === 'failed')
                sendPending(p);
    }

    function markRead(m) {
        if (m.author === me.login || readSent.has(m.message_id) ||
            (m.read_by || []).includes(me.login) ||
            document.visibilityState !== 'visible')
            return;
        readSent.add(m.message_id);
        api('POST', `/api/cases/${encodeURIComponent(caseId)}/messages/` +
            `${encodeURIComponent(m.message_id)}/read`, {})
            .catch(() => readSent.delete(m.message_id));
    }

    function onReceipt(r) {
        const m = messages.get(r.message_id);
        if (!m || r.case_id !== caseId)
            return;
        const rb = new Set(m.read_by || []);
        rb.add(r.user);
        addMessage(Object.assign({}, m, { read_by: [...rb] }));
    }

    function buildChatForm() {
        const text = h('textarea', { id: 'chat-text', rows: '2',
                                     maxlength: '8000', required: true });
        const attach = h('input', { type: 'checkbox', id: 'chat-attach' });
        const attachLabel = h('label', { class: 'check' }, attach,
                              ' Point at the image shown');
        const send = h('button', { type: 'submit', class: 'primary' },
                       'Send');
        const closed = h('p', { class: 'muted', hidden: true },
                         'This case is closed; reopen it to write.');
        const form = h('form', { class: 'chat-form',
                                 'aria-label': 'Write a message' },
            h('label', { for: 'chat-text' }, 'Message'), text,
            h('div', { class: 'row' },
              attachLabel, send));
        form.addEventListener('submit', async (e) => {
            e.preventDefault();
            const t = text.value.trim();
            if (!t)
                return;
            const p = { message_id: ulid(), text: t, state: 'sending',
                        image: (attach.checked && viewer &&
                                viewer.current()) || null };
            pending.set(p.message_id, p);
            text.value = '';
            attach.checked = false;
            await sendPending(p);
        });
        text.addEventListener('keydown', (e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey))
                form.requestSubmit();
        });
        const el = h('div', {}, closed, form);
        return {
            el,
            sync() {
                const isClosed = kase.status === 'closed';
                form.hidden = isClosed;
                closed.hidden = !isClosed;
                attachLabel.hidden = !(kase.study_uids || []).length;
            },
        };
    }

    // ---- the answer form (the claimer only) -------------------------------
    function buildAnswerForm() {
        const field = (id, label, rows, max, hint) => {
            const t = h('textarea', { id, rows: String(rows),
                                      maxlength: String(max) });
            return [t, h('label', { for: id }, label,
                         hint ? h('span', { class: 'muted' }, ` ${hint}`)
                              : null), t];
        };
        const [imp, ...impEls] = field('ans-impression', 'Impression', 3,
                                       4000, '');
        const [rec, ...recEls] = field('ans-recommendation', 'Recommendation',
                                       3, 4000, '(optional)');
        const [txt, ...txtEls] = field('ans-text', 'Details', 4, 16000,
                                       '(optional)');
        const send = h('button', { type: 'submit', class: 'primary big' },
                       'Send answer');
        const cancel = h('button', { type: 'button', hidden: true },
                         'Cancel');
        const err = h('p', { class: 'error', role: 'alert', hidden: true });
        const title = h('h2', { id: 'h-ansform' }, 'Your answer');
        const form = h('form', { class: 'card answer-form',
                                 'aria-labelledby': 'h-ansform', hidden: true },
            title, impEls, recEls, txtEls, err, send, cancel);
        // Amending: the form holds the answer given, the server keeps the
        // one it replaces.
        let amending = false;
        function setAmending(on) {
            amending = on;
            title.textContent = on ? 'Amend your answer' : 'Your answer';
            send.textContent = on ? 'Send amended answer' : 'Send answer';
            cancel.hidden = !on;
        }
        cancel.addEventListener('click', () => {
            setAmending(false);
            imp.value = rec.value = txt.value = '';
            sync();
        });
        form.addEventListener('submit', async (e) => {
            e.preventDefault();
            const p = {};
            if (imp.value.trim())
                p.impression = imp.value.trim();
            if (rec.value.trim())
                p.recommendation = rec.value.trim();
            if (txt.value.trim())
                p.text = txt.value.trim();
            if (!p.impression && !p.text) {
                showError(err, 'Write an impression (or details).');
                imp.focus();
                return;
            }
            showError(err, null);
            send.disabled = true;
            try {
                const d = await api('POST', `/api/cases/` +
                                    `${encodeURIComponent(caseId)}/` +
                                    `${amending ? 'amend' : 'answer'}`, p);
                imp.value = rec.value = txt.value = '';
                setAmending(false);
                update(d.case);
            } catch (ex) {
                showError(err, `Not sent: ${ex.message}`);
            } finally {
                send.disabled = false;
            }
        });
        function sync() {
            form.hidden = !(amending || (kase.claimed_by === me.login &&
                                         (kase.status === 'claimed' ||
                                          kase.status === 'reopened')));
        }
        return {
            el: form,
            sync,
            amend() {
                const a = kase.answer || {};
                imp.value = a.impression || '';
                rec.value = a.recommendation || '';
                txt.value = a.text || '';
                setAmending(true);
                sync();
                imp.focus();
            },
        };
    }

    // ---- live ---------------------------------------------------------------
    const onCases = (e) => {
        if (e.detail && e.detail.case_id === caseId)
            update(e.detail, true);
    };
    const onMessage = (e) => addMessage(e.detail);
    const onReceiptEv = (e) => onReceipt(e.detail);
    let arrivedTimer = null;
    const onArrived = (e) => {
        if (e.detail.case_id !== caseId || !kase)
            return;
        if (typeof e.detail.received === 'number')
            kase.images = e.detail.images || { received: e.detail.received };
        renderImages();
        if (!previewShown && previewTimer)
            loadPreview(0);
        if (!viewer)
            return;
        clearTimeout(arrivedTimer);
        arrivedTimer = setTimeout(() => viewer && viewer.refresh(), 500);
    };
    // The link is back: an image that failed to load is asked again now.
    const onWelcome = () => {
        if (viewer)
            viewer.retry();
        retryPending();
        if (kase)
            loadTimeline();
    };
    window.addEventListener('online', retryPending);
    // "x min ago", deadlines and overdue follow the clock; the countdown
    // to the escalation every second.
    const headTick = setInterval(() => {
        if (kase) {
            renderHead();
            renderTimeline();
        }
    }, 15000);
    const countdowns = tickCountdowns(head, () => kase && renderHead());
    ctx.live.addEventListener('welcome', onWelcome);
    const onVisible = () => {
        for (const m of messages.values())
            markRead(m);
    };
    store.addEventListener('cases', onCases);
    store.addEventListener('message', onMessage);
    store.addEventListener('receipt', onReceiptEv);
    store.addEventListener('arrived', onArrived);
    document.addEventListener('visibilitychange', onVisible);

    // ---- load -------------------------------------------------------------
    fill(main, h('p', { class: 'muted' }, 'Loading case…'));
    api('GET', `/api/cases/${encodeURIComponent(caseId)}`).then((d) => {
        if (dead)
            return;
        const c = d.case;
        const msgs = c.messages || [];
        delete c.messages;
        update(c);
        for (const m of msgs)
            addMessage(m);
        viewer = createViewer(c.study_uids || [], c.first_image);
        imagesBox.appendChild(viewer.el);
        fill(main, body);
        if (!isSpecialist && c.status === 'new')
            loadTimeline(TIMELINE_POLL_MS);
    }).catch((err) => {
        if (dead)
            return;
        fill(main, h('a', { href: '#/inbox', class: 'back' }, '‹ Inbox'),
             h('p', { class: 'error', role: 'alert' },
               err.status === 404
                   ? 'This case does not exist, or you may not see it.'
                   : `Could not load the case: ${err.message}`));
    });

    return () => {
        dead = true;
        clearTimeout(arrivedTimer);
        clearTimeout(previewTimer);
        if (viewer)
            viewer.destroy();
        store.removeEventListener('cases', onCases);
        store.removeEventListener('message', onMessage);
        store.removeEventListener('receipt', onReceiptEv);
        store.removeEventListener('arrived', onArrived);
        document.removeEventListener('visibilitychange', onVisible);
        ctx.live.removeEventListener('welcome', onWelcome);
        clearInterval(headTick);
        clearInterval(countdowns);
        clearTimeout(timelineTimer);
        window.removeEventListener('online', retryPending);
    };
}
