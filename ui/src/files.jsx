// Resources whose create is an upload (a multipart/form-data POST, e.g. `file`): a form
// with a file input, a list and a show page with a preview of pictures and a download
// button. The bytes are fetched with the signed-in user's token (never a cookie, never a
// URL that works without credentials), as blobs the page shows or saves.
import { useEffect, useState } from 'react';
import {
    Create, Datagrid, DateField, FileField, FileInput, FunctionField, ImageField,
    ImageInput, List, NumberField, Show, SimpleForm, SimpleShowLayout, TextField,
    required, useNotify, usePermissions, useRecordContext,
} from 'react-admin';
import Button from '@mui/material/Button';
import DownloadIcon from '@mui/icons-material/Download';
import { session } from './authProvider.js';
import { RA_URL } from './config.js';
import {
    ListActions, RecordButtons, ShowActions, defaultSort, fieldElement, filterElements,
    inputElement,
} from './views.jsx';

const PICTURES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

const authHeaders = () => {
    const current = session.get();
    return current ? { Authorization: `Bearer ${current.token}` } : {};
};

/** The bytes at a path of the API, with the user's token. */
async function fetchBlob(path) {
    const resp = await fetch(path, { headers: authHeaders(), credentials: 'omit' });
    if (!resp.ok) throw new Error(`${resp.status} ${resp.statusText}`);
    return resp.blob();
}

const fileFieldOf = def => def.upload?.fields.find(f => f.kind === 'file')?.source || 'content';

/** Where a record's picture can be seen: its thumbnail, else the picture itself. */
function previewPath(record, def) {
    if (!record) return null;
    if (record.thumbnail) return record.thumbnail;
    const path = record[fileFieldOf(def)];
    return typeof path === 'string' && PICTURES.includes(record.content_type) ? path : null;
}

/** A picture's preview (a blob URL of bytes fetched with the token), or nothing. */
export function Preview({ def, size = 64 }) {
    const record = useRecordContext();
    const path = previewPath(record, def);
    const [url, setUrl] = useState(null);
    useEffect(() => {
        if (!path) return undefined;
        let made = null;
        let live = true;
        fetchBlob(path).then(blob => {
            if (!live) return;
            made = URL.createObjectURL(blob);
            setUrl(made);
        }).catch(() => setUrl(null));
        return () => {
            live = false;
            if (made) URL.revokeObjectURL(made);
        };
    }, [path]);
    if (!path || !url) return null;
    return (
        <img src={url} alt={`preview of ${record.name || record.id}`} data-testid="file-preview"
            style={{ maxWidth: size, maxHeight: size, objectFit: 'contain', display: 'block' }} />
    );
}

/** Saves the record's bytes under its name (a blob fetched with the token). */
export function DownloadButton({ def }) {
    const record = useRecordContext();
    const notify = useNotify();
    const path = record?.[fileFieldOf(def)];
    if (typeof path !== 'string') return null;
    const save = event => {
        event.stopPropagation(); // not a row click
        fetchBlob(path).then(blob => {
            const url = URL.createObjectURL(blob);
            const a = document.createElement('a');
            a.href = url;
            a.download = record.name || 'download';
            document.body.appendChild(a);
            a.click();
            a.remove();
            setTimeout(() => URL.revokeObjectURL(url), 10_000);
        }).catch(error => notify(`Download failed: ${error.message}`, { type: 'error' }));
    };
    return (
        <Button size="small" startIcon={<DownloadIcon />} onClick={save} aria-label="Download">
            Download
        </Button>
    );
}

const SHOWN = ['name', 'content_type', 'size', 'privacy', 'list_id', 'uid', 'created'];

function columns(def, byName) {
    const bySource = Object.fromEntries(def.fields.map(f => [f.source, f]));
    return SHOWN.filter(s => bySource[s]).map(s => (s === 'size'
        ? <NumberField key="size" source="size" label="Bytes" options={{ useGrouping: false }} />
        : s === 'created' ? <DateField key="created" source="created" label="Created" showTime />
            : fieldElement(bySource[s], byName)));
}

export function makeFileList(def, byName) {
    const FileList = () => (
        <List filters={filterElements(def, byName)} sort={defaultSort(def)} perPage={10}
            actions={<ListActions def={def} />}>
            <Datagrid rowClick={def.hasShow ? 'show' : false}
                bulkActionButtons={false}>
                <FunctionField label="Preview" sortable={false}
                    render={() => <Preview def={def} />} />
                {columns(def, byName)}
                <FunctionField label="" sortable={false}
                    render={() => <DownloadButton def={def} />} />
                <RecordButtons def={def} label="" />
            </Datagrid>
        </List>
    );
    return FileList;
}

export function makeFileShow(def, byName) {
    const hidden = new Set(['rbac', fileFieldOf(def), 'thumbnail']);
    const FileShow = () => (
        <Show actions={<ShowActions def={def} />}>
            <SimpleShowLayout>
                <FunctionField label="Preview" render={() => <Preview def={def} size={320} />} />
                <FunctionField label="Content" render={() => <DownloadButton def={def} />} />
                {def.fields.filter(f => !hidden.has(f.source)).map(f => fieldElement(f, byName))}
            </SimpleShowLayout>
        </Show>
    );
    return FileShow;
}

export function makeFileCreate(def, byName) {
    const accept = def.upload.schema?.properties?.[fileFieldOf(def)]?.['x-content-types'];
    const FileCreate = () => {
        const { permissions } = usePermissions();
        const opts = { creating: true, isAdmin: Array.isArray(permissions) && permissions.includes('admin') };
        return (
            <Create redirect={def.hasShow ? 'show' : 'list'}>
                <SimpleForm>
                    {def.upload.fields.map(f => (f.kind === 'file'
                        ? <FileOrImage key={f.source} f={f} accept={accept} />
                        : inputElement(f, byName, opts)))}
                </SimpleForm>
            </Create>
        );
    };
    return FileCreate;
}

function FileOrImage({ f, accept }) {
    const pictures = Array.isArray(accept) && accept.every(t => t.startsWith('image/'));
    const Input = pictures ? ImageInput : FileInput;
    const Field = pictures ? ImageField : FileField;
    return (
        <Input source={f.source} label={f.label} validate={f.required ? required() : undefined}
            accept={Array.isArray(accept) ? Object.fromEntries(accept.map(t => [t, []])) : undefined}>
            <Field source="src" title="title" />
        </Input>
    );
}

/** A data provider whose create of an upload resource sends multipart/form-data: the
 * record's fields first, then the file (the API reads them in that order). */
export function withUploads(dataProvider, resources, httpClient) {
    const uploads = Object.fromEntries(resources.filter(r => r.upload).map(r => [r.name, r]));
    return {
        ...dataProvider,
        create: (resource, params) => {
            const def = uploads[resource];
            if (!def) return dataProvider.create(resource, params);
            const field = fileFieldOf(def);
            const form = new FormData();
            let file = null;
            for (const [key, value] of Object.entries(params.data || {})) {
                if (key === field) {
                    file = value?.rawFile || null;
                } else if (value !== undefined && value !== null && value !== '') {
                    form.append(key, String(value));
                }
            }
            if (file) form.append(field, file, file.name);
            return httpClient(`${RA_URL}/${resource}`, { method: 'POST', body: form })
                .then(({ json }) => ({ data: json }));
        },
    };
}
