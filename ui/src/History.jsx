// A record's history: the audit entries about it, newest first, on a tab of its show page.
//
// The entries come from the stock data provider as a reference list of resource "audit"
// (GET /audit?filter={"resource": ..., "record_id": ...}): the server shows only entries
// about records the caller may read, with the fields they may read. A refusal (403) or
// an empty answer shows as a line of text, never a broken page.
import {
    Datagrid, DateField, FunctionField, Pagination, ReferenceField, ReferenceManyField, Tab,
    TextField, useListContext,
} from 'react-admin';
import Typography from '@mui/material/Typography';

const shown = value => {
    if (value === null || value === undefined) return '∅';
    if (typeof value === 'string') return value === '' ? '""' : value;
    return JSON.stringify(value);
};

/** An entry's changes: one line per field, `field: old → new` (a secret: "changed"). */
export function Changes({ changes }) {
    if (!changes || typeof changes !== 'object' || !Object.keys(changes).length) {
        return <span style={{ color: 'gray' }}>—</span>;
    }
    return (
        <ul style={{ margin: 0, paddingLeft: 16 }} className="audit-changes">
            {Object.entries(changes).map(([field, change]) => (
                <li key={field} data-field={field}>
                    <strong>{field}</strong>:{' '}
                    {change && change.changed && !('old' in change) && !('new' in change)
                        ? <em>changed</em>
                        : <>{shown(change?.old)} → {shown(change?.new)}</>}
                </li>
            ))}
        </ul>
    );
}

/** Who wrote: the person when the caller may read it, else their id. */
export const Who = ({ source = 'uid', label = 'Who' }) => (
    <FunctionField source={source} label={label} sortable={false} render={r => (
        r[source] ? (
            <ReferenceField record={r} source={source} reference="person" link={false}
                emptyText={r[source]} />
        ) : <span style={{ color: 'gray' }}>—</span>
    )} />
);

function Quiet() {
    const { error, total, isPending } = useListContext();
    if (isPending) return null;
    if (error) {
        return (
            <Typography variant="body2" sx={{ p: 2 }} role="status">
                {error.status === 403 ? 'You may not read this history.' : 'The history could not be read.'}
            </Typography>
        );
    }
    if (!total) return <Typography variant="body2" sx={{ p: 2 }} role="status">No history yet.</Typography>;
    return null;
}

function HistoryGrid() {
    const { error, total } = useListContext();
    if (error || !total) return <Quiet />;
    return (
        <>
            <Datagrid bulkActionButtons={false} rowClick={false} className="history">
                <DateField source="created" label="When" showTime sortable={false} />
                <Who label="Who" />
                <TextField source="action" sortable={false} />
                <FunctionField label="Changes" render={r => <Changes changes={r.changes} />} />
            </Datagrid>
            <Pagination rowsPerPageOptions={[10, 25, 50]} />
        </>
    );
}

/** The History tab of a show page of resource `name`. */
export function historyTab(name) {
    return (
        <Tab label="History" path="history" key="history">
            <ReferenceManyField reference="audit" target="record_id" label={false}
                filter={{ resource: name }} sort={{ field: 'created', order: 'DESC' }} perPage={10}>
                <HistoryGrid />
            </ReferenceManyField>
        </Tab>
    );
}
