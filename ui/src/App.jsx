// The admin application: one <Resource> per resource the spec serves, plus the trashcan.
import { useMemo } from 'react';
import { Admin, Resource } from 'react-admin';
import DeleteIcon from '@mui/icons-material/Delete';
import HistoryIcon from '@mui/icons-material/History';
import { makeAudit } from './Audit.jsx';
import { authProvider } from './authProvider.js';
import { dataProvider, httpClient } from './dataProvider.js';
import { makeFileCreate, makeFileList, makeFileShow, withUploads } from './files.jsx';
import { LoginPage } from './LoginPage.jsx';
import { makeTrashList } from './Trashcan.jsx';
import { makeCreate, makeEdit, makeList, makeShow } from './views.jsx';

export function buildResources(resources, withAudit = false) {
    const byName = Object.fromEntries(resources.map(r => [r.name, r]));
    return resources.map(def => (def.upload ? {
        def, // an upload resource (files.jsx)
        list: makeFileList(def, byName),
        show: def.hasShow ? makeFileShow(def, byName) : undefined,
        edit: def.editFields ? makeEdit(def, byName) : undefined,
        create: makeFileCreate(def, byName),
    } : {
        def,
        list: makeList(def, byName),
        // model-backed records (rbac letters) have a history when the trail is served
        show: def.hasShow ? makeShow(def, byName, withAudit && Boolean(def.rbac)) : undefined,
        edit: def.editFields ? makeEdit(def, byName) : undefined,
        create: def.createFields ? makeCreate(def, byName) : undefined,
    }));
}

// polyglot's "one |||| many": a create page says "Create List", the menu "Lists"
const labelOf = def => `${def.singular} |||| ${def.label}`;

export function App({ title, resources, withTrashcan, withAudit }) {
    const views = buildResources(resources, withAudit);
    const TrashList = withTrashcan ? makeTrashList(resources) : null;
    const provider = useMemo(() => withUploads(dataProvider, resources, httpClient), [resources]);
    const audit = withAudit ? makeAudit(resources) : null;
    return (
        <Admin title={title} dataProvider={provider} authProvider={authProvider}
            loginPage={LoginPage} disableTelemetry>
            {views.map(({ def, list, show, edit, create }) => (
                <Resource key={def.name} name={def.name} options={{ label: labelOf(def) }}
                    list={list} show={show} edit={edit} create={create}
                    recordRepresentation={def.recordRepresentation} />
            ))}
            {TrashList ? (
                <Resource name="trashcan" options={{ label: 'Trashcan' }} list={TrashList}
                    icon={DeleteIcon} />
            ) : null}
            {audit ? (
                <Resource name="audit" options={{ label: 'Audit trail' }} list={audit.AuditList}
                    show={audit.AuditShow} icon={HistoryIcon} />
            ) : null}
        </Admin>
    );
}
