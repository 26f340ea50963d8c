// Generic list, show, edit and create views, built from a derived resource (spec.js).
//
// Actions follow each record's `rbac` letters: no "u", no edit button; no "d", no delete
// button and no row selection. The create button asks can-i "c" (authProvider.canAccess).
import {
    AutocompleteInput, BooleanField, BooleanInput, BulkDeleteButton, CreateButton, Create,
    Datagrid, DateField, DateInput, DateTimeInput, DeleteButton, Edit, EditButton, EmailField,
    ExportButton, FilterButton, FunctionField, Labeled, List, NumberField, NumberInput,
    PasswordInput, ReferenceField, ReferenceInput, SaveButton, SearchInput, SelectField,
    SelectInput, Show, ShowButton, SimpleForm, SimpleShowLayout, Tab, TabbedShowLayout,
    TextField, TextInput, Toolbar, TopToolbar, UrlField, required, usePermissions,
    useRecordContext,
} from 'react-admin';
import { historyTab } from './History.jsx';
import Chip from '@mui/material/Chip';

const PLAIN_NUMBER = { useGrouping: false, maximumFractionDigits: 20 };

/** An object of strings as key=value chips (a metric's labels). */
function Labels({ value }) {
    if (!value || typeof value !== 'object') return null;
    return (
        <span style={{ display: 'inline-flex', flexWrap: 'wrap', gap: 4 }}>
            {Object.entries(value).map(([k, v]) => (
                <Chip key={k} size="small" variant="outlined" label={`${k}=${v}`} />
            ))}
        </span>
    );
}

const has = (record, letter) => typeof record?.rbac === 'string' && record.rbac.includes(letter);

/** A read-only element showing one field (list column or show line). */
export function fieldElement(f, byName) {
    const common = { key: f.source, source: f.source, label: f.label, sortable: f.sortable,
        emptyText: '' };
    switch (f.kind) {
        case 'reference': {
            const target = byName[f.reference];
            return (
                <ReferenceField {...common} reference={f.reference}
                    link={target?.hasShow ? 'show' : false} />
            );
        }
        case 'enum':
            return <SelectField {...common} choices={f.choices} />;
        case 'boolean':
            return <BooleanField {...common} />;
        case 'integer':
        case 'number':
            // as the API sends it: no thousands separators (a year is 2024, not 2,024)
            return <NumberField {...common} options={PLAIN_NUMBER} />;
        case 'labels':
            return <FunctionField {...common} render={r => <Labels value={r[f.source]} />} />;
        case 'datetime':
            return <DateField {...common} showTime />;
        case 'date':
            return <DateField {...common} />;
        case 'email':
            return <EmailField {...common} />;
        case 'url':
            return <UrlField {...common} />;
        case 'json':
            return (
                <FunctionField {...common} sortable={false}
                    render={r => (r[f.source] == null ? '' : JSON.stringify(r[f.source]))} />
            );
        default:
            return <TextField {...common} />;
    }
}

/** A form input for one writable field; read-only ones are shown, not edited. */
export function inputElement(f, byName, { creating, isAdmin }) {
    if (f.readOnly || (f.source === 'uid' && !isAdmin)) {
        // the owner is the caller unless an admin says otherwise; server-owned fields are
        // sent back unchanged with the whole record, which the API accepts
        if (creating) return null;
        return <Labeled key={f.source} label={f.label}>{fieldElement(f, byName)}</Labeled>;
    }
    const validate = f.required && (creating || f.kind !== 'password') ? required() : undefined;
    const common = { key: f.source, source: f.source, label: f.label, validate,
        helperText: f.description || false };
    switch (f.kind) {
        case 'reference': {
            const target = byName[f.reference];
            const search = target?.search?.length;
            return (
                <ReferenceInput key={f.source} source={f.source} reference={f.reference}>
                    <AutocompleteInput label={f.label} validate={validate}
                        filterToQuery={text => (search && text ? { q: text } : {})} />
                </ReferenceInput>
            );
        }
        case 'enum':
            return <SelectInput {...common} choices={f.choices}
                emptyText={f.required ? undefined : '(default)'} />;
        case 'boolean':
            return <BooleanInput {...common} />;
        case 'integer':
            return <NumberInput {...common} step={1} />;
        case 'number':
            return <NumberInput {...common} />;
        case 'datetime':
            return <DateTimeInput {...common} />;
        case 'date':
            return <DateInput {...common} />;
        case 'password':
            return <PasswordInput {...common} />;
        case 'longtext':
            return <TextInput {...common} multiline minRows={3} fullWidth />;
        case 'email':
            return <TextInput {...common} type="email" />;
        default:
            return <TextInput {...common} />;
    }
}

export function filterElements(def, byName) {
    const out = [];
    if (def.search.length) {
        out.push(<SearchInput key="q" source="q" alwaysOn placeholder={`Search ${def.search.join(', ')}`} />);
    }
    for (const f of def.filters) {
        if (f.kind === 'enum') {
            out.push(<SelectInput key={f.source} source={f.source} label={f.label} choices={f.choices} />);
        } else if (f.kind === 'reference') {
            const search = byName[f.reference]?.search?.length;
            out.push(
                <ReferenceInput key={f.source} source={f.source} reference={f.reference} label={f.label}>
                    <AutocompleteInput label={f.label}
                        filterToQuery={text => (search && text ? { q: text } : {})} />
                </ReferenceInput>);
        }
    }
    return out;
}

/** Edit and delete buttons of one record, as its rbac letters allow. */
export function RecordButtons({ def }) {
    const record = useRecordContext();
    if (!record) return null;
    return (
        <span style={{ whiteSpace: 'nowrap' }}>
            {def.editFields && has(record, 'u') ? <EditButton /> : null}
            {def.hasDelete && has(record, 'd') ? <DeleteButton mutationMode="pessimistic" /> : null}
        </span>
    );
}

export function ListActions({ def }) {
    return (
        <TopToolbar>
            {def.filters.length ? <FilterButton /> : null}
            {def.createFields || def.upload ? <CreateButton /> : null}
            <ExportButton />
        </TopToolbar>
    );
}

export function defaultSort(def) {
    const created = def.fields.find(f => f.source === 'created' && f.sortable);
    return created ? { field: 'created', order: 'DESC' } : { field: 'id', order: 'ASC' };
}

export function makeList(def, byName) {
    const rowClick = (id, resource, record) =>
        def.editFields && has(record, 'u') ? 'edit' : def.hasShow ? 'show' : false;
    const ResourceList = () => (
        <List filters={filterElements(def, byName)} sort={defaultSort(def)} perPage={10}
            actions={<ListActions def={def} />}>
            <Datagrid rowClick={rowClick} isRowSelectable={r => has(r, 'd')}
                bulkActionButtons={def.hasDelete ? <BulkDeleteButton mutationMode="pessimistic" /> : false}>
                {def.listFields.map(f => fieldElement(f, byName))}
                <RecordButtons def={def} label="" />
            </Datagrid>
        </List>
    );
    return ResourceList;
}

export function ShowActions({ def }) {
    return (
        <TopToolbar>
            <RecordButtons def={def} />
        </TopToolbar>
    );
}

/** The show page; with `withHistory`, the fields on one tab and the record's audit
 * entries on a "History" tab (History.jsx). */
export function makeShow(def, byName, withHistory = false) {
    const fields = def.fields.filter(f => f.source !== 'rbac').map(f => fieldElement(f, byName));
    const ResourceShow = () => (
        <Show actions={<ShowActions def={def} />}>
            {withHistory ? (
                <TabbedShowLayout>
                    <Tab label="Record">{fields}</Tab>
                    {historyTab(def.name)}
                </TabbedShowLayout>
            ) : <SimpleShowLayout>{fields}</SimpleShowLayout>}
        </Show>
    );
    return ResourceShow;
}

function EditToolbar({ def }) {
    const record = useRecordContext();
    return (
        <Toolbar sx={{ display: 'flex', justifyContent: 'space-between' }}>
            <SaveButton />
            {def.hasDelete && has(record, 'd') ? <DeleteButton mutationMode="pessimistic" /> : null}
        </Toolbar>
    );
}

function isAdminOf(permissions) {
    return Array.isArray(permissions) && permissions.includes('admin');
}

export function makeEdit(def, byName) {
    const ResourceEdit = () => {
        const { permissions } = usePermissions();
        const opts = { creating: false, isAdmin: isAdminOf(permissions) };
        return (
            <Edit mutationMode="pessimistic"
                actions={def.hasShow ? <TopToolbar><ShowButton /></TopToolbar> : false}>
                <SimpleForm toolbar={<EditToolbar def={def} />}>
                    {def.editFields.map(f => inputElement(f, byName, opts))}
                </SimpleForm>
            </Edit>
        );
    };
    return ResourceEdit;
}

export function makeCreate(def, byName) {
    const ResourceCreate = () => {
        const { permissions } = usePermissions();
        const opts = { creating: true, isAdmin: isAdminOf(permissions) };
        return (
            <Create redirect={def.hasShow ? 'show' : 'list'}>
                <SimpleForm>
                    {def.createFields.map(f => inputElement(f, byName, opts))}
                </SimpleForm>
            </Create>
        );
    };
    return ResourceCreate;
}
