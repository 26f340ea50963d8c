// The stock ra-data-simple-rest provider, unchanged, pointed at the server's react-admin
// base URL; only its HTTP client is given the session token.
import simpleRestProvider from 'ra-data-simple-rest';
import { fetchUtils } from 'react-admin';
import { RA_URL } from './config.js';
import { credentialsFor, session } from './authProvider.js';

export const httpClient = (url, options = {}) => {
    const current = session.get();
    if (current?.cookie) { // signed in through a provider: the cookie, and CSRF on writes
        const how = credentialsFor(options.method, current);
        const headers = new Headers(options.headers || { Accept: 'application/json' });
        for (const [k, v] of Object.entries(how.headers)) headers.set(k, v);
        return fetchUtils.fetchJson(url, { ...options, headers, credentials: how.credentials });
    }
    return fetchUtils.fetchJson(url, {
        ...options,
        credentials: 'omit',
        user: current ? { authenticated: true, token: `Bearer ${current.token}` } : undefined,
    });
};

export const dataProvider = simpleRestProvider(RA_URL, httpClient);
