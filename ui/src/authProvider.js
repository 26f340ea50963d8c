// react-admin authProvider over apicrud's /auth: POST logs in, GET says who is calling,
// DELETE logs out, /auth/can-i answers canAccess. Requests carry the session token as
// `Authorization: Bearer`, so no cookie is relied on and no CSRF token is needed.
//
// Single sign-on is the exception: the OpenID callback signs the browser in with the
// session cookie and sends it back here. Such a session is kept as `{cookie: true}`: its
// requests go with the cookie (same origin) and, when they change state, the CSRF token
// that GET /auth tells a cookie-signed-in page.
import { HttpError } from 'react-admin';
import { API_URL } from './config.js';
import { rbacLetter } from './spec.js';

const KEY = 'apicrud.session';
const SSO_PENDING = 'apicrud.sso'; // sessionStorage: a provider sign-in is under way
const CAN_I_TTL = 60_000; // ms an answer of can-i is reused
const canICache = new Map();
// the resources /auth/can-i knows: model-backed ones, whose records carry `rbac` letters
// in the spec (main.jsx sets them); about any other the UI does not ask
let canIResources = new Set();

export function setCanIResources(names) {
    canIResources = new Set(names);
    canICache.clear();
}

export const session = {
    get() {
        try {
            // no client-side expiry: the server may extend a session, and says 401 when
            // it has ended (checkError then forgets it)
            const s = JSON.parse(localStorage.getItem(KEY) || 'null');
            return s && (s.token || s.cookie) ? s : null;
        } catch {
            return null;
        }
    },
    set(value) {
        canICache.clear();
        if (value) localStorage.setItem(KEY, JSON.stringify(value));
        else localStorage.removeItem(KEY);
    },
};

async function problem(response) {
    let body = {};
    try {
        body = await response.json();
    } catch {
        /* not JSON */
    }
    return new HttpError(body.message || body.detail || response.statusText, response.status, body);
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** How a request carries the session: `{credentials, headers}` to merge into fetch's
 * options (the Bearer token; or the cookie, with the CSRF token on writes). */
export function credentialsFor(method, current = session.get()) {
    if (current?.cookie) {
        const headers = SAFE.has((method || 'GET').toUpperCase()) ? {}
            : { 'X-CSRF-Token': current.csrf || '' };
        return { credentials: 'same-origin', headers };
    }
    return { credentials: 'omit', // the Bearer token is the credential
        headers: current ? { Authorization: `Bearer ${current.token}` } : {} };
}

async function call(method, path, body) {
    const headers = new Headers({ Accept: 'application/json' });
    const how = credentialsFor(method);
    for (const [k, v] of Object.entries(how.headers)) headers.set(k, v);
    if (body !== undefined) headers.set('Content-Type', 'application/json');
    const response = await fetch(API_URL + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: how.credentials,
    });
    if (!response.ok) throw await problem(response);
    return response.status === 204 ? null : response.json();
}

async function canI(letter, resource, id) {
    const key = `${letter}:${resource}:${id || ''}`;
    const hit = canICache.get(key);
    if (hit && hit.at > Date.now() - CAN_I_TTL) return hit.answer;
    const query = new URLSearchParams({ action: letter, resource });
    if (id) query.set('id', id);
    const answer = call('GET', `/auth/can-i?${query}`).then(
        r => Boolean(r.allowed),
        error => {
            canICache.delete(key);
            if (error.status === 401) throw error;
            // no answer: the server still decides every request, so show the screen and
            // let it answer
            return true;
        });
    canICache.set(key, { at: Date.now(), answer });
    return answer;
}

/** The login methods and OpenID providers the server offers (GET /auth/methods); on
 * no answer, passwords only. */
export async function loginMethods() {
    try {
        const r = await fetch(`${API_URL}/auth/methods`, { headers: { Accept: 'application/json' },
            credentials: 'omit' });
        if (!r.ok) throw new Error(String(r.status));
        const body = await r.json();
        return { methods: Array.isArray(body.methods) ? body.methods : ['password'],
            providers: Array.isArray(body.providers) ? body.providers : [] };
    } catch {
        return { methods: ['password'], providers: [] };
    }
}

/** Off to the provider: the server starts the flow and, once signed in, sends the
 * browser back to this page's own path (a path, never another site: the server refuses
 * anything else). */
export function startSso(provider) {
    sessionStorage.setItem(SSO_PENDING, provider.name);
    const query = new URLSearchParams({ return_to: window.location.pathname });
    window.location.assign(`${API_URL}/auth/oidc/${encodeURIComponent(provider.name)}?${query}`);
}

/** Back from a provider: the cookie the callback set is the session; ask who it is. */
async function pickUpSso() {
    if (!sessionStorage.getItem(SSO_PENDING)) return;
    sessionStorage.removeItem(SSO_PENDING);
    const r = await fetch(`${API_URL}/auth`, { headers: { Accept: 'application/json' },
        credentials: 'same-origin' });
    if (!r.ok) return;
    const me = await r.json();
    if (me.method !== 'cookie' || !me.uid) return;
    session.set({ cookie: true, csrf: me.csrf_token, uid: me.uid, username: me.username,
        roles: me.roles || [], account_id: me.account_id });
}

export const authProvider = {
    async login({ username, password, otp, method }) {
        const body = { username, password };
        if (otp) body.otp = otp;
        if (method && method !== 'password') body.method = method;
        const r = await call('POST', '/auth', body);
        session.set({ token: r.token, expires: r.expires, uid: r.uid, username: r.username || username,
            roles: r.roles || [], account_id: r.account_id });
    },
    async logout() {
        const current = session.get();
        session.set(null);
        if (current) {
            try {
                await fetch(`${API_URL}/auth`, { method: 'DELETE', ...credentialsFor('DELETE', current) });
            } catch {
                /* the token is forgotten here anyway */
            }
        }
    },
    async checkAuth() {
        if (!session.get()) await pickUpSso();
        if (!session.get()) throw new Error('not logged in');
    },
    async checkError(error) {
        if (error?.status === 401) {
            session.set(null);
            throw new Error('session ended');
        }
        // 403 and the rest: keep the session, react-admin shows the message
    },
    async getIdentity() {
        const s = session.get();
        if (!s) throw new Error('not logged in');
        return { id: s.uid, fullName: s.username, accountId: s.account_id };
    },
    async getPermissions() {
        return session.get()?.roles || [];
    },
    async canAccess({ action, resource, record }) {
        if (!session.get()) return false; // not logged in: the login page comes next
        const letter = rbacLetter(action);
        if (!letter || resource === 'trashcan') return true; // trashcan lists only what you may delete
        if (record && typeof record.rbac === 'string') return record.rbac.includes(letter);
        // not model-backed (e.g. metric): nothing to ask, the server filters what it serves
        if (!canIResources.has(resource)) return true;
        const id = record?.id != null && letter !== 'c' && letter !== 'l' ? String(record.id) : undefined;
        if (!id && letter !== 'c' && letter !== 'l') return true; // collection-wide read: the list filters
        return canI(letter, resource, id);
    },
};
