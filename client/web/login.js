// login — the login page: login + password -> POST /api/login, which
// sets the HttpOnly session cookie; the token in the reply is not kept
// (the cookie is what the page, the images and the WebSocket use).

import { api, h, fill } from './util.js';

export function mount(main, { onLogin }) {
    const msg = h('p', { class: 'error', role: 'alert', hidden: true });
    const login = h('input', { id: 'login', name: 'login', type: 'text',
                               autocomplete: 'username', required: true,
                               autocapitalize: 'none', spellcheck: 'false' });
    const password = h('input', { id: 'password', name: 'password',
                                  type: 'password', required: true,
                                  autocomplete: 'current-password' });
    const button = h('button', { type: 'submit', class: 'primary' },
                     'Log in');
    const form = h('form', { class: 'card login', 'aria-labelledby': 'lh' },
        h('h1', { id: 'lh' }, 'Log in to Hashi'),
        h('p', { class: 'muted' },
          'Teleconsultation: cases, images and answers.'),
        h('label', { for: 'login' }, 'Login'), login,
        h('label', { for: 'password' }, 'Password'), password,
        msg, button);

    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        msg.hidden = true;
        button.disabled = true;
        button.textContent = 'Logging in…';
        try {
            const d = await api('POST', '/api/login',
                                { login: login.value.trim(),
                                  password: password.value });
            password.value = '';
            await onLogin(d.user);
        } catch (err) {
            msg.textContent = err.status === 401
                ? 'Wrong login or password.'
                : err.status === 429
                    ? 'Too many attempts. Wait a minute and try again.'
                    : `Could not log in: ${err.message}`;
            msg.hidden = false;
            button.disabled = false;
            button.textContent = 'Log in';
            password.focus();
        }
    });
    fill(main, form);
    document.title = 'Log in — Hashi';
    login.focus();
    return () => {};
}
