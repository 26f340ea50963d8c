// Where the API lives, as the server that delivered this page says (meta tags it inserts
// into index.html); the defaults fit `npm run dev` with its proxy.
const meta = name => document.querySelector(`meta[name="${name}"]`)?.getAttribute('content');

export const API_URL = meta('apicrud-base-url') || '/api/v1';
export const RA_URL = meta('apicrud-react-admin-url') || `${API_URL}/ra`;
