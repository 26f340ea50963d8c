// Start-up: fetch the OpenAPI document, derive the resources, render the admin.
import { createRoot } from 'react-dom/client';
import { App } from './App.jsx';
import { setCanIResources } from './authProvider.js';
import { API_URL } from './config.js';
import { SPECIAL, deriveResources } from './spec.js';

const root = createRoot(document.getElementById('root'));

function fail(message) {
    root.render(
        <div style={{ fontFamily: 'sans-serif', padding: '2em' }}>
            <h1>apicrud admin</h1>
            <p role="alert">{message}</p>
        </div>,
    );
}

fetch(`${API_URL}/openapi.json`, { headers: { Accept: 'application/json' }, credentials: 'omit' })
    .then(r => {
        if (!r.ok) throw new Error(`${API_URL}/openapi.json answered ${r.status}`);
        return r.json();
    })
    .then(spec => {
        const all = deriveResources(spec);
        const resources = all.filter(r => !SPECIAL.has(r.name));
        const withTrashcan = all.some(r => r.name === 'trashcan');
        const withAudit = all.some(r => r.name === 'audit');
        setCanIResources(resources.filter(r => r.rbac).map(r => r.name));
        document.title = `${spec.info?.title || 'apicrud'} admin`;
        root.render(<App title={spec.info?.title || 'apicrud'} resources={resources}
            withTrashcan={withTrashcan} withAudit={withAudit} />);
    })
    .catch(error => fail(`Cannot load the API description: ${error.message}`));
