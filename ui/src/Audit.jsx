// The audit trail: every write (and sign-in) the caller may see, newest first, with
// filters by resource, action and person, and a show view with old → new per field.
//
// Uses the stock data provider on resource "audit" (GET /audit, GET /audit/{id}). The
// server shows only entries about records the caller may read now, with the fields
// they may read; an empty page or a refusal shows as such.
import {
    AutocompleteInput, Datagrid, DateField, FunctionField, Link, List, ReferenceInput,
    SelectInput, Show, SimpleShowLayout, TextField, TextInput, useRecordContext,
} from 'react-admin';
import { Changes, Who } from './History.jsx';

const ACTIONS = ['create', 'update', 'delete', 'restore', 'purge', 'login', 'login_failed',
    'logout', 'logout_all', 'use'].map(a => ({ id: a, name: a }));

/** The names of the changed fields (a list column). */
const changedFields = r => (r.changes && typeof r.changes === 'object'
    ? Object.keys(r.changes).join(', ') : '');

function RecordLink({ byName }) {
    const r = useRecordContext();
    if (!r?.record_id) return <span style={{ color: 'gray' }}>—</span>;
    const target = byName[r.resource];
    if (!target?.hasShow) return <span>{r.record_id}</span>;
    return (
        <Link to={`/${r.resource}/${encodeURIComponent(r.record_id)}/show`}
            onClick={e => e.stopPropagation()}>{r.record_id}</Link>
    );
}

export function makeAudit(resources) {
    const byName = Object.fromEntries(resources.map(r => [r.name, r]));
    const kinds = resources.filter(r => r.rbac).map(r => ({ id: r.name, name: r.name }));
    const filters = [
        <SelectInput key="resource" source="resource" choices={kinds} alwaysOn />,
        <SelectInput key="action" source="action" choices={ACTIONS} alwaysOn />,
        byName.person ? (
            <ReferenceInput key="uid" source="uid" reference="person" alwaysOn>
                <AutocompleteInput label="Who" filterToQuery={text => (text ? { q: text } : {})} />
            </ReferenceInput>
        ) : <TextInput key="uid" source="uid" label="Who (person id)" alwaysOn />,
    ];
    const AuditList = () => (
        <List resource="audit" title="Audit trail" filters={filters} exporter={false}
            sort={{ field: 'created', order: 'DESC' }} perPage={25} empty={false}>
            <Datagrid bulkActionButtons={false} rowClick="show">
                <DateField source="created" label="When" showTime />
                <Who label="Who" />
                <TextField source="action" />
                <TextField source="resource" />
                <RecordLink byName={byName} label="Record" />
                <FunctionField label="Changed fields" render={changedFields} />
            </Datagrid>
        </List>
    );
    const AuditShow = () => (
        <Show resource="audit" title="Audit entry">
            <SimpleShowLayout>
                <DateField source="created" label="When" showTime />
                <Who label="Who" />
                <TextField source="auth_method" label="Signed in by" emptyText="—" />
                <TextField source="action" />
                <TextField source="resource" />
                <RecordLink byName={byName} label="Record" />
                <TextField source="operation" emptyText="—" />
                <TextField source="rule" label="Allowed by" emptyText="—" />
                <TextField source="request_id" label="Request" emptyText="—" />
                <TextField source="client_addr" label="Client address" emptyText="—" />
                <FunctionField label="Changes" render={r => <Changes changes={r.changes} />} />
            </SimpleShowLayout>
        </Show>
    );
    return { AuditList, AuditShow };
}
