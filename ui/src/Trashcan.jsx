// The trashcan: records you deleted (and may delete), with restore and purge.
//
// Uses the same stock data provider on resource "trashcan": restore is its update
// (PUT {"status": "active"}), purge its delete (DELETE, for good).
import { useState } from 'react';
import {
    Button, Confirm, Datagrid, DateField, List, ReferenceField, SelectInput, TextField,
    useDelete, useNotify, useRecordContext, useRefresh, useUpdate,
} from 'react-admin';
import RestoreIcon from '@mui/icons-material/RestoreFromTrash';
import DeleteForeverIcon from '@mui/icons-material/DeleteForever';

const errorText = error => error?.body?.message || error?.message || 'failed';

function RestoreButton() {
    const record = useRecordContext();
    const notify = useNotify();
    const refresh = useRefresh();
    const [update, { isPending }] = useUpdate();
    if (!record) return null;
    const restore = event => {
        event.stopPropagation();
        update('trashcan', { id: record.id, data: { status: 'active' }, previousData: record }, {
            mutationMode: 'pessimistic',
            onSuccess: () => {
                notify(`Restored ${record.resource} ${record.label || record.record_id}`, { type: 'success' });
                refresh();
            },
            onError: error => notify(errorText(error), { type: 'error' }),
        });
    };
    return (
        <Button label="Restore" onClick={restore} disabled={isPending}>
            <RestoreIcon />
        </Button>
    );
}

function PurgeButton() {
    const record = useRecordContext();
    const notify = useNotify();
    const refresh = useRefresh();
    const [open, setOpen] = useState(false);
    const [remove, { isPending }] = useDelete();
    if (!record) return null;
    const purge = () => {
        remove('trashcan', { id: record.id, previousData: record }, {
            mutationMode: 'pessimistic',
            onSuccess: () => {
                setOpen(false);
                notify(`Purged ${record.resource} ${record.label || record.record_id}`, { type: 'info' });
                refresh();
            },
            onError: error => {
                setOpen(false);
                notify(errorText(error), { type: 'error' });
            },
        });
    };
    return (
        <>
            <Button label="Purge" color="error" disabled={isPending}
                onClick={event => { event.stopPropagation(); setOpen(true); }}>
                <DeleteForeverIcon />
            </Button>
            <Confirm isOpen={open} loading={isPending} title="Purge for good?"
                content={`${record.resource} "${record.label || record.record_id}" will be removed with what depends on it. This cannot be undone.`}
                onConfirm={purge} onClose={() => setOpen(false)} />
        </>
    );
}

export function makeTrashList(resources) {
    const choices = resources.filter(r => r.hasStatus && r.hasDelete)
        .map(r => ({ id: r.name, name: r.label }));
    const filters = [<SelectInput key="resource" source="resource" choices={choices} alwaysOn />];
    const TrashList = () => (
        <List resource="trashcan" title="Trashcan" filters={filters} exporter={false}
            sort={{ field: 'deleted', order: 'DESC' }} perPage={10}
            empty={false}>
            <Datagrid bulkActionButtons={false} rowClick={false}>
                <TextField source="resource" />
                <TextField source="label" emptyText="" />
                <TextField source="record_id" label="Id" />
                <ReferenceField source="uid" reference="person" label="Owner" link={false} emptyText="" />
                <DateField source="deleted" showTime />
                <RestoreButton />
                <PurgeButton />
            </Datagrid>
        </List>
    );
    return TrashList;
}
