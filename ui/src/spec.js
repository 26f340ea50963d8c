// Derive the admin UI's resources from the served OpenAPI document.
//
// A resource is every path `/{name}` whose GET answers a page of `items`; its record
// operations come from `/{name}/{param}` (GET show, PUT edit, DELETE delete) and its
// create form from the POST body schema. Columns, inputs and references come from the
// schemas, so a resource added to the spec shows up here with no UI code.

const LABEL_FIELDS = ['name', 'subject', 'title', 'label', 'info', 'username'];
const HIDDEN_IN_LIST = new Set(['rbac', 'status', 'modified']);
const HIDDEN_IN_FORMS = new Set(['rbac', 'status']);
const MAX_COLUMNS = 8;
const LONG_TEXT = 255; // a string longer than this gets a multi-line input and no column
// resources with a page of their own, not the generic views
export const SPECIAL = new Set(['trashcan', 'audit']);

/** Follow local `$ref`s (`#/components/...`); merge `allOf` members; of `oneOf` or
 * `anyOf` (e.g. one record or an array of them, as a bulk create takes) the first
 * member that is an object with properties. */
export function resolve(spec, schema, depth = 0) {
    if (!schema || typeof schema !== 'object' || depth > 20) return schema || {};
    if (schema.$ref) {
        const ref = schema.$ref;
        if (!ref.startsWith('#/')) return {};
        let target = spec;
        for (const part of ref.slice(2).split('/')) {
            target = target?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
        }
        const { $ref, ...rest } = schema; // siblings of $ref (3.1) win over the target
        return { ...resolve(spec, target, depth + 1), ...rest };
    }
    const choices = Array.isArray(schema.oneOf) ? schema.oneOf : schema.anyOf;
    if (Array.isArray(choices) && !schema.properties) {
        const { oneOf, anyOf, ...rest } = schema;
        const record = choices.map(s => resolve(spec, s, depth + 1))
            .find(s => s && s.properties && firstType(s) === 'object');
        return record ? { ...record, ...rest } : schema;
    }
    if (Array.isArray(schema.allOf)) {
        const merged = { ...schema, properties: {}, required: [] };
        delete merged.allOf;
        for (const part of schema.allOf.map(s => resolve(spec, s, depth + 1))) {
            Object.assign(merged.properties, part.properties || {});
            merged.required.push(...(part.required || []));
            // a create body is allOf: [{$ref: Resource}, {required: [...]}]: the record's
            // type, title and extensions come from the part that declares them
            for (const [key, value] of Object.entries(part)) {
                if (!(key in merged)) merged[key] = value;
            }
        }
        return merged;
    }
    return schema;
}

const NUMERIC = new Set(['integer', 'number']);

/** The schema's type; a number that may also be given as a string ([string, integer])
 * is a number. */
const firstType = schema => {
    const t = schema.type;
    if (Array.isArray(t)) {
        const types = t.filter(x => x !== 'null');
        if (types.includes('string') && types.some(x => NUMERIC.has(x)) && !schema.enum) {
            return types.includes('number') ? 'number' : 'integer';
        }
        return types[0] || 'string';
    }
    return t || (schema.enum ? 'string' : schema.properties ? 'object' : 'string');
};

const humanize = name =>
    name.replace(/_id$/, '').replace(/_/g, ' ').replace(/^./, c => c.toUpperCase());

const IRREGULAR = { person: 'people', child: 'children', man: 'men', woman: 'women' };

/** English plural of a lower-case word. */
function plural(word) {
    if (IRREGULAR[word]) return IRREGULAR[word];
    if (/[^aeiou]y$/.test(word)) return word.slice(0, -1) + 'ies';
    if (/(ss|x|z|ch|sh)$/.test(word)) return word + 'es';
    if (/s$/.test(word)) return word; // already plural (settings, metrics)
    return word + 's';
}

const SINGULAR = Object.fromEntries(Object.entries(IRREGULAR).map(([one, many]) => [many, one]));

/** English singular of a lower-case plural word. */
function singular(word) {
    if (SINGULAR[word]) return SINGULAR[word];
    if (/[^aeiou]ies$/.test(word)) return word.slice(0, -3) + 'y';
    if (/(ss|x|z|ch|sh|us)es$/.test(word)) return word.slice(0, -2);
    if (/[^su]s$/.test(word)) return word.slice(0, -1);
    return word;
}

/** What one record of a resource is called: the schema's title made singular ("API
 * keys": "API key"), else the name ("Category"). */
export function recordLabel(name, schema) {
    const title = typeof schema?.title === 'string' ? schema.title.trim() : '';
    if (!title) return humanize(name.replace(/_/g, ' '));
    const words = title.split(' ');
    const last = words[words.length - 1];
    const one = singular(last.toLowerCase());
    words[words.length - 1] = last === last.toLowerCase() ? one
        : last[0] + one.slice(1); // keep a capital (a one-word title: "People": "Person")
    return words.join(' ');
}

/** A menu label for a resource: the schema's `title`, else the name's plural
 * (category: "Categories", list_member: "List members"). */
export function resourceLabel(name, schema) {
    if (typeof schema?.title === 'string' && schema.title.trim()) return schema.title.trim();
    const words = name.split('_').filter(Boolean);
    if (!words.length) return name;
    words[words.length - 1] = plural(words[words.length - 1]);
    return humanize(words.join(' '));
}

/** An object of string values (e.g. a metric's labels): shown as key=value chips. */
const isStringMap = prop => {
    const extra = prop.additionalProperties;
    return firstType(prop) === 'object' && !prop.properties && extra && typeof extra === 'object'
        && firstType(extra) === 'string';
};

function kindOf(prop) {
    const type = firstType(prop);
    if (prop.format === 'binary' || prop.contentMediaType) return 'file';
    if (prop.enum) return 'enum';
    if (type === 'boolean') return 'boolean';
    if (type === 'integer') return 'integer';
    if (type === 'number') return 'number';
    if (isStringMap(prop)) return 'labels';
    if (type === 'object' || type === 'array') return 'json';
    if (prop.format === 'date-time') return 'datetime';
    if (prop.format === 'date') return 'date';
    if (prop.format === 'email') return 'email';
    if (prop.format === 'uri' || prop.format === 'url') return 'url';
    if (prop.format === 'password') return 'password';
    if ((prop.maxLength || 0) > LONG_TEXT) return 'longtext';
    return 'text';
}

/** The resource a field points at: `uid` is the owner's person, `<name>_id` is `<name>`. */
function referenceOf(source, names) {
    if (source === 'uid' && names.has('person')) return 'person';
    const m = /^([a-z][a-z0-9_]*)_id$/.exec(source);
    return m && names.has(m[1]) ? m[1] : null;
}

/** One field description per schema property. */
export function deriveFields(spec, schema, names) {
    const s = resolve(spec, schema);
    const required = new Set(s.required || []);
    return Object.entries(s.properties || {}).map(([source, raw]) => {
        const prop = resolve(spec, raw);
        const related = Boolean(prop['x-related'] || prop['x-computed']);
        const kind = related ? 'text' : kindOf(prop);
        const reference = related ? null : referenceOf(source, names);
        return {
            source,
            label: source === 'uid' ? 'Owner' : humanize(source),
            kind: reference ? 'reference' : kind,
            reference,
            choices: prop.enum ? prop.enum.filter(v => v !== null).map(v => ({ id: v, name: String(v) })) : null,
            readOnly: Boolean(prop.readOnly) || related,
            required: required.has(source),
            nullable: Array.isArray(prop.type) && prop.type.includes('null'),
            sortable: !related && source !== 'rbac' && kind !== 'json' && kind !== 'labels',
            description: prop.description || '',
            maxLength: prop.maxLength,
        };
    });
}

/** The item schema of a find response (`{items: [...]}`), or null if it is no page. */
function pageItems(spec, op) {
    const ok = op?.responses?.['200'];
    const content = resolve(spec, ok)?.content?.['application/json'];
    const body = resolve(spec, content?.schema);
    const items = body?.properties?.items;
    return items ? resolve(spec, items.items || {}) : null;
}

/** A multipart/form-data create body (an upload: see files.jsx), or null. */
const uploadSchema = (spec, op) =>
    op?.requestBody
        ? resolve(spec, resolve(spec, op.requestBody)?.content?.['multipart/form-data']?.schema)
        : null;

const bodySchema = (spec, op) =>
    op?.requestBody
        ? resolve(spec, resolve(spec, op.requestBody)?.content?.['application/json']?.schema)
        : null;

/** Search (`q`) as the server does it: `x-search`, else the plain free-text fields. */
function searchFields(schema, fields, writable) {
    if (Array.isArray(schema['x-search'])) return schema['x-search'];
    if (!writable) return []; // a read-only view (e.g. usage) has no text index to search
    return fields
        .filter(f => f.kind === 'text' && !f.readOnly && !f.reference && f.source !== 'uid'
            && !f.source.endsWith('_id'))
        .map(f => f.source);
}

/** The list columns: the first MAX_COLUMNS fit for a table cell, in schema order, and
 * always the labels (key=value) fields, which tell apart records of the same name. */
function listColumns(fields, label) {
    const fit = fields.filter(f => !HIDDEN_IN_LIST.has(f.source)
        && !['json', 'longtext', 'password'].includes(f.kind) && !(f.source === 'id' && label));
    const keep = new Set(fit.filter(f => f.kind === 'labels').slice(0, MAX_COLUMNS));
    for (const f of fit) {
        if (keep.size >= MAX_COLUMNS) break;
        keep.add(f);
    }
    return fit.filter(f => keep.has(f));
}

/** Every resource the spec serves as a collection, in the spec's path order. */
export function deriveResources(spec) {
    const paths = spec?.paths || {};
    const found = [];
    for (const [path, item] of Object.entries(paths)) {
        const m = /^\/([a-z][a-z0-9_]*)$/.exec(path);
        if (!m || !item?.get) continue;
        const schema = pageItems(spec, item.get);
        if (schema) found.push({ name: m[1], item, schema });
    }
    const names = new Set(found.map(r => r.name));
    return found.map(({ name, item, schema }) => {
        const recordPath = Object.keys(paths).find(p =>
            new RegExp(`^/${name}/\\{[^/}]+\\}$`).test(p));
        const record = recordPath ? paths[recordPath] : {};
        const fields = deriveFields(spec, schema, names);
        const createSchema = item.post ? bodySchema(spec, item.post) : null;
        const editSchema = record.put ? bodySchema(spec, record.put) : null;
        const writable = Boolean(createSchema || editSchema);
        const createRequired = new Set(createSchema ? resolve(spec, createSchema).required || [] : []);
        const label = fields.find(f => LABEL_FIELDS.includes(f.source) && f.kind === 'text');
        return {
            name,
            label: resourceLabel(name, schema),
            singular: recordLabel(name, schema),
            description: item.get.summary || '',
            fields,
            listFields: listColumns(fields, label),
            // the server computes `rbac` letters for the records of model-backed resources
            // only, and only those can /auth/can-i answer for (not e.g. metric)
            rbac: fields.some(f => f.source === 'rbac'),
            createFields: createSchema
                ? deriveFields(spec, createSchema, names)
                    .filter(f => !f.readOnly && !HIDDEN_IN_FORMS.has(f.source))
                : null,
            // updates are partial, so their body requires nothing; a field a create must
            // give is still one an edit form may not empty
            editFields: editSchema
                ? deriveFields(spec, editSchema, names)
                    .filter(f => !HIDDEN_IN_FORMS.has(f.source) && f.kind !== 'json'
                        && f.kind !== 'labels')
                    .map(f => ({ ...f, required: f.required || createRequired.has(f.source) }))
                : null,
            // an upload's form: file fields (format binary) and the others (files.jsx)
            upload: item.post && uploadSchema(spec, item.post)?.properties
                ? { schema: uploadSchema(spec, item.post), fields:
                    deriveFields(spec, uploadSchema(spec, item.post), names)
                        .filter(f => !f.readOnly && !HIDDEN_IN_FORMS.has(f.source)) }
                : null,
            hasShow: Boolean(record.get),
            hasDelete: Boolean(record.delete),
            hasStatus: fields.some(f => f.source === 'status'),
            search: searchFields(schema, fields, writable),
            filters: fields.filter(f => !f.readOnly && (f.kind === 'enum' || f.kind === 'reference')),
            recordRepresentation: label ? label.source : 'id',
        };
    });
}

/** Map a react-admin action to an RBAC letter (null: not an RBAC question). */
export function rbacLetter(action) {
    return {
        list: 'l', show: 'r', read: 'r', create: 'c', clone: 'c', edit: 'u', update: 'u',
        delete: 'd', export: 'l',
    }[action] || null;
}
